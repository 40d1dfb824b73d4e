"""Talking to a CIC metadata server: the HTTP client and the documents of a seeded user."""

from cic_seeding.meta.client import Document, MetaClient, PutResult

__all__ = ["Document", "MetaClient", "PutResult"]
