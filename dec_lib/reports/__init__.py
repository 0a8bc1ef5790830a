"""What a user reads after a run: figures and the Markdown and HTML report."""
