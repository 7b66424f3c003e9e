"""Test support: real servers as pytest plugins (feed server, SMTP server, Redis and
Celery processes), the browser launcher, CLI and email helpers, seed papers, factories."""
