"""The cockpit: server-rendered pages under /ui for marketing managers (Jinja2 templates and
plain HTML forms, no JavaScript build)."""
