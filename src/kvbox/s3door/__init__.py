"""The S3 front door: S3 requests answered over the storage core.

Layer: s3 door (async, over ``kvbox.core``; no sockets and no aiohttp: ``kvbox.server``
owns the transport and hands over ``kvbox.s3door.types.S3Request``). Rules: everything
S3 means *without I/O* lives in the pure ``kvbox.s3`` (routing, XML, error codes,
checksums, CORS and website rules), which never imports this package; this package is
where those pure answers meet the ``Store``:

* ``types``: the seam with the HTTP server (``S3Request``, ``S3Response``, ``FileBody``);
* ``frontend``: ``S3Frontend``, one request's pipeline (route, authenticate, authorize,
  dispatch, errors as S3 XML);
* ``access``: gathers a request's facts for the pure ``kvbox.policy`` decision;
* ``handlers/``: one module per family of operations;
* ``admin`` and ``explain``: the two non-S3 endpoints (``/_kvbox/admin``,
  ``/_kvbox/policy/explain``) that ``kvbox admin`` and ``kvbox policy explain`` use.
"""
