"""What an administrator does to the queue, written once for ``fax-gateway queue`` and ``/admin``.

- ``story``: a mail's whole story (``queue show``), as lines and events;
- ``actions``: retry and cancel (``queue retry|cancel``), each returning what it did in
  sentences, with a dry run for the admin page's confirmation step;
- ``overview``: the queue by state (held, failing, in flight, done today) and the
  received faxes of the last days with their delivery per address (the admin page).

Values in, values out over the store: nothing here prints, parses arguments or speaks
HTTP. Cancelling a fax at eFax goes through a ``Canceller`` the caller hands in.
"""
