"""Command-line interface; formats output and calls the layers below."""
