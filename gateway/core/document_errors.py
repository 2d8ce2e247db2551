"""Why a mail cannot become a fax: the exception tree of the documents core.

Every exception here carries one sentence for the sender as ``str(e)``; the SMTP
handler answers ``554 5.6.0 <sentence>`` (or ``552 5.3.4`` for the "too big" kinds).
Each sentence names the file it is about.

    DocumentError                 base; never raised bare except for a message/partial
     +-- NothingToFax             nothing faxable found; names what was found and what is accepted
     +-- DocumentRefused          one attachment the sender meant cannot be faxed
     |                            (encrypted or damaged PDF, image bomb, no office converter, ...)
     +-- TooManyPages             the fax would exceed ``max_pages``
          +-- TooManyDocuments    the fax would exceed ``max_documents``

The documents module re-exports all of them; import them from there.
"""

from __future__ import annotations


class DocumentError(Exception):
    """Base: str(e) is one sentence for the sender, e.g. for the SMTP reply."""


class NothingToFax(DocumentError):
    """The mail holds nothing that can be faxed; the sentence says what was found."""


class DocumentRefused(DocumentError):
    """An attachment the sender meant to fax cannot be faxed; the sentence names it."""


class TooManyPages(DocumentError):
    """The documents together have more pages than one fax may have."""


class TooManyDocuments(TooManyPages):
    """More documents than one fax may carry (a kind of "too big")."""


class SplitMessage(DocumentError):
    """The mail is one piece of a message/partial split; reassemble before extracting."""
