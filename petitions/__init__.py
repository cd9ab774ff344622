"""petitions: solidarity statements and petitions with email-confirmed signatures."""

__version__ = "0.1.0"
