"""ml_collections configs; each module's get_config() docstring gives the command that runs it."""
