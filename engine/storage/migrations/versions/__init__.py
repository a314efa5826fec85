"""One module per schema revision, oldest first: v1 is the first release's schema."""
