"""HTTP edge: ``app`` (factory, error envelope), ``api`` (schemas and routes), ``static`` (the page)."""
