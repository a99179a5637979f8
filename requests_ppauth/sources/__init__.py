"""Built-in credential sources, registered through the same hook as any plugin."""
