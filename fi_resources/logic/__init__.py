"""Pure-Python logic for FineInstructions (standard library only)."""
