"""Agent recipes: one YAML file per agent, keyed by environment id with a ``default`` fallback."""
