"""The control center: login with MFA, users, policies, audit, webhooks, web UI."""
