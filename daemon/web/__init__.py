"""The web view's static files (HTML, CSS, ES modules), served by ``daemon/http/web.py``.

Plain files, no build step and nothing fetched from a CDN: the daemon reads them from this
package (package data) once at start-up. ``unlock.js`` is not served as a file; it is inlined,
hash-pinned by the CSP, into the 401 page a browser gets before it has a session.
"""
