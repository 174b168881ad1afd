"""One module per kind of dependency; `waitfor.probes.table` wires them up."""
