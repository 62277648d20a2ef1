"""Developer tools (local stand-ins for external services) used by the tests and the offline demo."""
