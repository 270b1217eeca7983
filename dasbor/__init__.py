"""Dasbor: the web pages of Omni-Ledger for sellers, the incubator and the city.

Served by the service itself under ``/dasbor/`` (``DasborPages``, an
extension of the API's app), server-rendered with Jinja templates, reading
the read models and writing through the same code as the API. Bahasa
Indonesia first, English on request. Nothing here is imported by ``ledger/``.
"""

from dasbor.app import DasborPages

__all__ = ["DasborPages"]
