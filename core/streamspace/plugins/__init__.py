"""Plugins: the manifest, configuration against its schema, and the Plugin resource's policy."""
