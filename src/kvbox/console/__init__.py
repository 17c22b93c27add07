"""The web console: the S3 lab, the key-value keyspace and administration in a browser.

Layer: console (over the S3 door; below ``server``, which serves it). Modules:

* ``door``: the console's HTTP door -- the page and assets, sign-in and sessions, CSRF,
  the S3 relay (``ConsoleDoor``);
* ``endpoints``: the console's own JSON endpoints (statistics, presigned links, the
  public check, policy validation, the dashboard), each asking the S3 door first;
* ``replies``: JSON replies and refusals; ``settings``: how the console is reached;
* ``gateway``: every action as an S3 request signed as the signed-in principal and run
  through the S3 door's own pipeline -- the console grants nothing the API would not;
* ``session``: sessions with idle and absolute expiry, sign-in rate limits (pure);
* ``samples``: the dashboard's ring of counter samples (pure);
* ``policy_lines``: the line a policy validation error is about (pure);
* ``static/``: the page (HTML, CSS, ES modules; no build step, no other host).

docs/console.md describes the screens and the security model.
"""
