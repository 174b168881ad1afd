from waitfor.cli import main

raise SystemExit(main())
