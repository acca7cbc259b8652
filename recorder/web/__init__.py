"""The officers' web console (``recorder web``): Starlette pages over the officer APIs.

Layout: ``roles`` (who may do what), ``passwords`` (argon2), ``accounts`` (the catalog's web rows,
awaited), ``security`` (tokens, CSRF, response headers), ``auth`` (sessions, sign-in),
``pages``/``actions`` (routes), ``app`` (assembly), ``serve`` (hypercorn on trio), ``commands``
(the CLI). docs/web.md describes it for operators.
"""
