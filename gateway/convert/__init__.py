"""Converters that run outside the gateway's process (LibreOffice, for office documents and
HTML), behind the documents core's ``OfficeConverter`` interface, and the fonts text faxes
are set in (``fonts``). The only package that starts converter processes; imported by
``gateway.app``, which hands a converter and the fonts to the core inside ``ExtractionLimits``.
"""
