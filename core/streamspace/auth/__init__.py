"""Authentication data shared by the facade and the command line: roles, API keys."""
