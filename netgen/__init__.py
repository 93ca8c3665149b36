"""netgen: compile a YAML container-network spec into Linux commands, and run them."""

__version__ = "0.1.0"
