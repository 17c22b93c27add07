"""POST Object: a browser's HTML form upload, streamed into the store.

Layer: s3 handlers. The form is parsed by ``kvbox.proto.formdata`` as it arrives, its
signature checked by ``kvbox.auth.form``, its policy by ``kvbox.s3.postpolicy``. Rules
(AWS's "POST Object" and "Browser-based uploads using POST"):

* The fields before the file are read whole (at most 20 KB); then, before one byte of
  the file is kept, the form is judged: its signature (V4 or V2; none is anonymous),
  the policy (expiration, every condition, no field left uncovered), the key, and the
  one access decision (``s3:PutObject`` on the key, plus ``s3:PutObjectAcl`` /
  ``s3:PutObjectTagging`` when the form sets an ACL or tags) for whoever signed it.
  The front door does not decide a POST upload itself: only the form knows the key and
  the signer, so this handler asks ``Context.authorize`` once it does.
* The file streams into ``Store.put_stream`` piece by piece; its size is held to the
  policy's ``content-length-range`` (and 5 GB) as it flows, its checksums (``Content-MD5``,
  ``x-amz-checksum-*``) are verified at its end, and the rest of the body (parts after
  the file, which AWS ignores) must still be well-formed up to the closing boundary.
  Any failure is raised before the stream ends, so nothing is committed.
* Form fields become what the same headers do on PutObject: ``Content-Type`` and the
  other stored headers, ``x-amz-meta-*``, ``acl`` (``x-amz-acl``) and ``x-amz-grant-*``,
  ``tagging`` (a ``Tagging`` XML document), ``x-amz-website-redirect-location``,
  ``x-amz-object-lock-*`` (with the same rules as PutObject's headers, Content-MD5 or a
  checksum included), ``x-amz-storage-class`` (STANDARD only). Other ``x-amz-*`` fields
  (server-side encryption...) are NotImplemented rather than silently dropped.
* Success is ``success_action_redirect`` (303 to it, with ``bucket``, ``key`` and
  ``etag``), else ``success_action_status`` 200, 201 (with a ``PostResponse`` body) or
  204 (anything else).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote, urlencode, urlsplit

from multidict import CIMultiDict

from kvbox.auth.form import FormAuth, verify_form
from kvbox.proto.formdata import (
    End,
    Event,
    Field,
    FileData,
    FileEnd,
    FileStart,
    FormParser,
    boundary_of,
)
from kvbox.s3.checksums import (
    algorithm_for_header,
)
from kvbox.s3.errors import S3Error
from kvbox.s3.names import check_key
from kvbox.s3.postpolicy import (
    PostPolicy,
    check_form,
    check_size,
    expand_key,
    parse_post_policy,
    success_status,
)
from kvbox.s3.router import Endpoint, Op, write_actions
from kvbox.s3.xml import PostResponse, Tagging, quote_etag
from kvbox.s3door.handlers.acl import write_acl_attrs
from kvbox.s3door.handlers.common import (
    CHECKSUM,
    TAG,
    Context,
    PayloadChecks,
    payload,
    require_integrity_check,
    stored_headers,
    user_metadata,
)
from kvbox.s3door.handlers.locking import needs_integrity_check, write_lock_attrs
from kvbox.s3door.handlers.object import DEFAULT_CONTENT_TYPE, put_version
from kvbox.s3door.types import S3Request, S3Response

#: Fields that carry the form's signature or its success instructions, not the object.
_CONTROL_FIELDS = frozenset(
    {
        "key",
        "policy",
        "file",
        "awsaccesskeyid",
        "signature",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-signature",
        "success_action_redirect",
        "redirect",
        "success_action_status",
        "acl",
        "tagging",
        "content-md5",
        "x-amz-checksum-algorithm",
        "x-amz-storage-class",
        "x-amz-website-redirect-location",
        "x-amz-object-lock-mode",
        "x-amz-object-lock-retain-until-date",
        "x-amz-object-lock-legal-hold",
    }
)
#: Request headers the form stands in for: a POST's own are ignored, as on AWS.
_FROM_FORM = (
    "content-type",
    "content-md5",
    "content-disposition",
    "content-encoding",
    "cache-control",
    "expires",
    "x-amz-",
)
#: Fields that go onto the object as the same-named header would.
_HEADER_FIELDS = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
)


class _Form:
    """The events of one form body, pulled as the handler needs them."""

    def __init__(self, req: S3Request) -> None:
        self._parser = FormParser(boundary_of(req.header("content-type")))
        self._body = req.body.__aiter__()
        self._events: deque[Event] = deque()
        self._finished = False

    async def next(self) -> Event | None:
        while not self._events:
            if self._finished:
                return None
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._finished = True
                self._events.extend(self._parser.finish())
                continue
            self._events.extend(self._parser.feed(chunk))
        return self._events.popleft()


async def _fields(form: _Form) -> tuple[dict[str, str], FileStart]:
    """The fields before the file (by lower-case name) and the file's part."""
    fields: dict[str, str] = {}
    while True:
        ev = await form.next()
        if isinstance(ev, Field):
            name = ev.name.lower()
            if name in fields:
                raise S3Error(
                    "InvalidArgument",
                    f"POST form fields must not repeat: {ev.name}",
                    extra={"ArgumentName": ev.name},
                )
            try:
                fields[name] = ev.value.decode("utf-8")
            except UnicodeDecodeError:
                raise S3Error(
                    "InvalidArgument",
                    f"POST form field {ev.name} is not UTF-8",
                    extra={"ArgumentName": ev.name},
                ) from None
        elif isinstance(ev, FileStart):
            return fields, ev
        elif ev is None or isinstance(ev, End):
            if "key" not in fields:
                raise _missing_key()
            raise S3Error("IncorrectNumberOfFilesInPostRequest")


def _missing_key() -> S3Error:
    return S3Error(
        "InvalidArgument",
        "Bucket POST must contain a field named 'key'.  If it is specified, please check "
        "the order of the fields.",
        extra={"ArgumentName": "key"},
    )


def _as_headers(req: S3Request, fields: Mapping[str, str]) -> CIMultiDict[str]:
    """The request's headers with the form's object fields as the headers they stand for
    (what PutObject's helpers, the ACL rules and the access decision read)."""
    headers: CIMultiDict[str] = CIMultiDict(
        (k, v)
        for k, v in req.headers.items()
        if k.lower() not in ("content-type", "content-md5", "x-amz-acl")
        and not k.lower().startswith(
            ("x-amz-meta-", "x-amz-grant-", "x-amz-checksum-", "x-amz-tagging")
        )
    )
    for name, value in fields.items():
        if (
            name in _HEADER_FIELDS
            or name == "content-md5"
            or name.startswith(("x-amz-meta-", "x-amz-grant-", "x-amz-object-lock-"))
            or algorithm_for_header(name) is not None
        ):
            headers[name] = value
    if "acl" in fields:
        headers["x-amz-acl"] = fields["acl"]
    if "tagging" in fields:
        headers["x-amz-tagging"] = Tagging.from_xml(fields["tagging"].encode()).to_header()
    return headers


def _check_fields(fields: Mapping[str, str]) -> None:
    """Refuse what kvbox would otherwise drop: unsupported x-amz-* fields, a storage
    class other than STANDARD."""
    storage = fields.get("x-amz-storage-class")
    if storage is not None and storage.strip() != "STANDARD":
        raise S3Error("InvalidStorageClass", extra={"StorageClassRequested": storage})
    for name in fields:
        if name in _CONTROL_FIELDS or name.startswith(("x-amz-meta-", "x-amz-grant-")):
            continue
        if name.startswith("x-amz-") and algorithm_for_header(name) is None:
            raise S3Error(
                "NotImplemented", f"The POST form field {name} is not implemented by kvbox"
            )


def _checksum_headers(fields: Mapping[str, str]) -> CIMultiDict[str]:
    """The form's checksum fields as the headers ``common.payload`` verifies: the same
    rules and errors as a PutObject's (``x-amz-checksum-algorithm`` asks for one to be
    computed, like ``x-amz-sdk-checksum-algorithm``)."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in fields.items():
        if name == "content-md5" or algorithm_for_header(name) is not None:
            out[name] = value
    if "x-amz-checksum-algorithm" in fields:
        out["x-amz-sdk-checksum-algorithm"] = fields["x-amz-checksum-algorithm"]
    return out


async def _signer(ctx: Context, fields: Mapping[str, str]) -> tuple[str | None, FormAuth | None]:
    """(principal, how it signed) for the form; (None, None) when it is anonymous."""
    access_key = fields.get("awsaccesskeyid")
    credential = fields.get("x-amz-credential")
    if credential is not None:
        access_key = credential.split("/", 1)[0]
    found = None
    if access_key and ctx.key_secret is not None:
        found = await ctx.key_secret(access_key)

    def lookup(key: str) -> str | None:
        return found[1] if found is not None and key == access_key else None

    auth = verify_form(fields, lookup, ctx.region)
    if auth is None:
        return None, None
    assert found is not None  # verify_form raised InvalidAccessKeyId otherwise
    return found[0], auth


def _no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", resource=f"/{bucket}", extra={"BucketName": bucket})


async def post_object(ctx: Context, req: S3Request, ep: Endpoint) -> S3Response:
    assert ep.bucket is not None
    bucket = ep.bucket
    form = _Form(req)
    fields, file = await _fields(form)
    principal, auth = await _signer(ctx, fields)
    # A signer learns that a bucket is missing; a stranger's form goes on to the access
    # decision, which refuses it word for word as it would for a bucket that exists.
    if await ctx.store.get_bucket(bucket) is None and (
        principal is not None or ctx.authorize is None
    ):
        raise _no_such_bucket(bucket)
    policy: PostPolicy | None = None
    if "policy" in fields and auth is not None:
        policy = parse_post_policy(fields["policy"])
    if "key" not in fields:
        raise _missing_key()
    key = expand_key(fields["key"], file.filename)
    if not key:
        raise S3Error("InvalidArgument", "User key must have a length greater than 0.")
    check_key(key)
    fields["key"] = key
    if policy is not None:
        check_form(policy, fields, bucket, ctx.now())
    _check_fields(fields)
    headers = _as_headers(req, fields)
    signed = dataclasses.replace(req, headers=headers, principal=principal)
    req.principal = principal
    target = Endpoint(Op.POST_OBJECT, bucket, key, extra_actions=write_actions(headers))
    signed.form_signature = None if auth is None else auth.signature_version
    if ctx.authorize is not None:
        await ctx.authorize(signed, target)
    attrs = user_metadata(headers)
    attrs.update(stored_headers(headers))
    if "x-amz-tagging" in headers:
        attrs.update({TAG + k: v for k, v in Tagging.from_header(headers["x-amz-tagging"]).tags})
    attrs.update(await write_acl_attrs(ctx, signed, bucket))
    b = await ctx.store.get_bucket(bucket)
    attrs.update(write_lock_attrs(b, signed, bucket))
    if needs_integrity_check(b, signed):
        require_integrity_check(signed, "Post Object")
    final_attrs = dict(attrs)

    async def file_bytes() -> AsyncIterator[bytes]:
        size = 0
        while True:
            ev = await form.next()
            if isinstance(ev, FileData):
                size += len(ev.data)
                check_size(policy, size, final=False)
                yield ev.data
            elif isinstance(ev, FileEnd) or ev is None:
                break
        while await form.next() is not None:
            pass  # parts after the file: ignored, but the body must end well-formed
        check_size(policy, size, final=True)

    checks = PayloadChecks()
    the_file = dataclasses.replace(
        req, headers=_checksum_headers(fields), body=file_bytes(), auth=None
    )

    async def source() -> AsyncIterator[bytes]:
        async for piece in payload(the_file, checks):
            yield piece
        for alg, value in checks.checksums.items():
            final_attrs[CHECKSUM + alg.value] = value

    content_type = fields.get("content-type") or DEFAULT_CONTENT_TYPE
    v = await put_version(ctx, bucket, key, source(), None, content_type, final_attrs)
    return _answer(req, fields, bucket, key, v.etag, None if v.is_null else v.version_id)


def _answer(
    req: S3Request,
    fields: Mapping[str, str],
    bucket: str,
    key: str,
    etag: str,
    version_id: str | None,
) -> S3Response:
    host = req.header("host") or "localhost"
    location = f"{'https' if req.secure else 'http'}://{host}/{quote(bucket)}/{quote(key)}"
    headers = {"ETag": quote_etag(etag), "Location": location}
    if version_id is not None:
        headers["x-amz-version-id"] = version_id
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and urlsplit(redirect).scheme in ("http", "https") and urlsplit(redirect).netloc:
        query = urlencode({"bucket": bucket, "key": key, "etag": quote_etag(etag)})
        headers["Location"] = redirect + ("&" if "?" in redirect else "?") + query
        return S3Response(303, headers)
    status = success_status(fields.get("success_action_status"))
    if status == 201:
        body = PostResponse(location, bucket, key, etag).to_xml()
        return S3Response(201, {**headers, "Content-Type": "application/xml"}, body)
    return S3Response(status, headers)
