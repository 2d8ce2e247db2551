"""The admin page on ``http.listen``: ``/admin``, server-rendered, behind a sign-in.

See ``views.py`` for the pages and what protects them, ``guard.py`` for the sign-in
throttle and the form tokens. Off (404) while no ``[[admins]]`` is configured.
"""
