"""S3 operation handlers, one module per family (garage's ``api/s3`` split).

Layer: s3 handlers. ``common`` holds the request/response seam and the attrs scheme;
``bucket`` the bucket operations, ``object`` the object operations (including copy and
tagging), ``listing`` ListObjects v1/v2. Every handler takes ``(Context, S3Request,
Endpoint)`` and returns an ``S3Response`` or raises ``S3Error`` / a ``KvboxError``.
"""
