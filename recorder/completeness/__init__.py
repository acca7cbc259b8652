"""Completeness: what should have been recorded (expectations), who and what a recording was
(enrichment), and what is missing or incomplete (findings).

``model`` holds the rows and the catalog seam, ``policy`` which meetings, engagements and calls
must be recorded, ``announcements`` the webhooks that announce them, ``reconciler`` the pure
verdict rules, ``autostart``, ``enrichment`` and ``service`` the trio shells, ``commands`` the CLI.
"""
