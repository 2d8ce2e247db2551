"""Converters that run outside the gateway's process (LibreOffice), behind the documents
core's ``OfficeConverter`` interface. The only package that starts converter processes;
imported by ``gateway.app``, which hands a converter to the core inside ``ExtractionLimits``.
"""
