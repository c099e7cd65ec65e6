"""Example methods of one's own for the workflow's `methods:` config (docs/workflow.md)."""
