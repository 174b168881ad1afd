"""waitfor: wait for a container's dependencies, then run the app as a proper PID 1."""

__version__ = "0.1.0"
