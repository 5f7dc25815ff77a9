"""MAPPA gateway policies."""
