"""Raw worker scripts that the dev runtime tests spawn as real processes."""
