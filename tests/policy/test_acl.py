"""ACL grants and Object Ownership: the pure model (``kvbox.policy.acl``) and how
``decide`` folds grants, owners and ``BucketOwnerEnforced`` into one answer."""

from __future__ import annotations

import json

import pytest

from kvbox.policy import AccessQuery, DecidedBy, PublicAccessFlags, decide, parse_policy
from kvbox.policy.acl import (
    ALL_USERS,
    AUTHENTICATED_USERS,
    LOG_DELIVERY,
    Acl,
    AclError,
    CannedAcl,
    Grant,
    Grantee,
    ObjectOwnership,
    Permission,
    canned,
    object_owner,
    private,
)

OWNER = "olivia"
KEY = "arn:aws:s3:::b/k"
BUCKET = "arn:aws:s3:::b"


def q(
    principal: str | None,
    action: str,
    resource: str = KEY,
    **kw: object,
) -> AccessQuery:
    return AccessQuery(
        principal=principal,
        action=action,
        resource=resource,
        bucket="b",
        bucket_owner=OWNER,
        **kw,  # type: ignore[arg-type]
    )


def grants(owner: str, *rows: tuple[Grantee, Permission]) -> Acl:
    return Acl(
        owner,
        (Grant(Grantee.user(owner), Permission.FULL_CONTROL), *(Grant(g, p) for g, p in rows)),
    )


# --- the model ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CannedAcl))
def test_canned_acls_round_trip_through_their_stored_text(name: CannedAcl) -> None:
    acl = canned(name, "bob", OWNER)
    back = Acl.from_text(acl.to_text(OWNER), "bob", OWNER)
    assert back == acl


def test_canned_expansions_are_awss() -> None:
    def rows(a: Acl) -> list[tuple[str, str]]:
        return [(g.grantee.value, g.permission.value) for g in a.grants]

    assert rows(canned("private", "bob")) == [("bob", "FULL_CONTROL")]
    assert rows(canned("public-read-write", "bob")) == [
        ("bob", "FULL_CONTROL"),
        (ALL_USERS, "READ"),
        (ALL_USERS, "WRITE"),
    ]
    assert rows(canned("authenticated-read", "bob"))[1] == (AUTHENTICATED_USERS, "READ")
    assert rows(canned("log-delivery-write", "bob"))[1:] == [
        (LOG_DELIVERY, "WRITE"),
        (LOG_DELIVERY, "READ_ACP"),
    ]
    # bucket-owner-* grant to the bucket owner, on someone else's object only
    assert rows(canned("bucket-owner-read", "bob", OWNER))[1] == (OWNER, "READ")
    assert rows(canned("bucket-owner-full-control", "bob", OWNER))[1] == (OWNER, "FULL_CONTROL")
    assert canned("bucket-owner-full-control", OWNER, OWNER) == private(OWNER)
    assert canned("bucket-owner-read", OWNER) == private(OWNER)  # on a bucket: nothing more
    with pytest.raises(AclError):
        canned("aws-exec-write", "bob")


def test_an_acl_equal_to_a_canned_one_is_stored_by_name_others_as_json() -> None:
    assert grants(OWNER, (Grantee.group(ALL_USERS), Permission.READ)).to_text() == "public-read"
    assert private(OWNER).to_text() == "private"
    custom = grants(OWNER, (Grantee.user("alice"), Permission.READ_ACP))
    text = custom.to_text()
    assert json.loads(text) == [["u", OWNER, "FULL_CONTROL"], ["u", "alice", "READ_ACP"]]
    assert Acl.from_text(text, OWNER) == custom
    with pytest.raises(AclError):
        Acl.from_text('[["x", "a", "READ"]]', OWNER)


def test_grantees_and_who_they_include() -> None:
    assert Grantee.group(ALL_USERS).includes(None)
    assert not Grantee.group(AUTHENTICATED_USERS).includes(None)
    assert Grantee.group(AUTHENTICATED_USERS).includes("alice")
    assert not Grantee.group(LOG_DELIVERY).includes("root")
    assert Grantee.user("alice").includes("alice") and not Grantee.user("alice").includes(None)
    assert Grantee.group(ALL_USERS).is_public and not Grantee.group(LOG_DELIVERY).is_public
    assert not Grantee.user("alice").is_public


@pytest.mark.parametrize(
    ("permission", "on_object", "allowed", "refused"),
    [
        (Permission.READ, False, "s3:listbucket", "s3:putobject"),
        (Permission.WRITE, False, "s3:deleteobject", "s3:listbucket"),
        (Permission.READ_ACP, False, "s3:getbucketacl", "s3:putbucketacl"),
        (Permission.WRITE_ACP, False, "s3:putbucketacl", "s3:getbucketacl"),
        (Permission.READ, True, "s3:getobjectversion", "s3:getobjectacl"),
        (Permission.READ_ACP, True, "s3:getobjectversionacl", "s3:putobjectacl"),
        (Permission.WRITE_ACP, True, "s3:putobjectacl", "s3:getobject"),
        (Permission.WRITE, True, None, "s3:putobject"),  # WRITE means nothing on an object
        (Permission.FULL_CONTROL, True, "s3:putobjectversionacl", "s3:deleteobject"),
        (Permission.FULL_CONTROL, False, "s3:putobject", "s3:getobject"),
    ],
)
def test_permission_to_action_mapping(
    permission: Permission, on_object: bool, allowed: str | None, refused: str
) -> None:
    actions = Grant(Grantee.user("alice"), permission).actions(on_object)
    if allowed is not None:
        assert allowed in actions
    assert refused not in actions


def test_ownership_of_a_new_object() -> None:
    bofc = canned("bucket-owner-full-control", "bob", OWNER)
    enforced, preferred, writer = (
        ObjectOwnership.BUCKET_OWNER_ENFORCED,
        ObjectOwnership.BUCKET_OWNER_PREFERRED,
        ObjectOwnership.OBJECT_WRITER,
    )
    assert object_owner(enforced, "bob", OWNER, None) == OWNER
    assert object_owner(preferred, "bob", OWNER, bofc) == OWNER
    assert object_owner(preferred, "bob", OWNER, canned("private", "bob", OWNER)) == "bob"
    assert object_owner(preferred, "bob", OWNER, None) == "bob"
    assert object_owner(writer, "bob", OWNER, bofc) == "bob"


# --- decide with grants ------------------------------------------------------------


def test_a_grant_to_a_named_user_lets_that_user_in_and_nobody_else() -> None:
    acl = grants(OWNER, (Grantee.user("alice"), Permission.READ))
    assert decide(q("alice", "s3:ListBucket", BUCKET, bucket_acl=acl)).decided_by is (
        DecidedBy.BUCKET_ACL
    )
    assert not decide(q("bob", "s3:ListBucket", BUCKET, bucket_acl=acl)).allowed
    assert not decide(q(None, "s3:ListBucket", BUCKET, bucket_acl=acl)).allowed
    # READ on the bucket is not WRITE
    assert not decide(q("alice", "s3:PutObject", KEY, bucket_acl=acl)).allowed


def test_acp_grants_allow_reading_and_writing_the_acl() -> None:
    acl = grants(
        OWNER,
        (Grantee.user("alice"), Permission.READ_ACP),
        (Grantee.user("bob"), Permission.WRITE_ACP),
    )
    assert decide(q("alice", "s3:GetBucketAcl", BUCKET, bucket_acl=acl)).allowed
    assert not decide(q("alice", "s3:PutBucketAcl", BUCKET, bucket_acl=acl)).allowed
    assert decide(q("bob", "s3:PutBucketAcl", BUCKET, bucket_acl=acl)).allowed
    obj = grants(OWNER, (Grantee.user("alice"), Permission.READ_ACP))
    d = decide(q("alice", "s3:GetObjectAcl", object_acl=obj))
    assert d.allowed and d.decided_by is DecidedBy.OBJECT_ACL
    assert not decide(q("alice", "s3:GetObject", object_acl=obj)).allowed


def test_ignore_public_acls_sets_aside_public_grants_only() -> None:
    acl = grants(
        OWNER, (Grantee.group(ALL_USERS), Permission.READ), (Grantee.user("alice"), Permission.READ)
    )
    ignore = PublicAccessFlags(ignore_public_acls=True)
    assert decide(q("alice", "s3:GetObject", object_acl=acl, public_access_block=ignore)).allowed
    d = decide(q(None, "s3:GetObject", object_acl=acl, public_access_block=ignore))
    assert not d.allowed and d.decided_by is DecidedBy.PUBLIC_ACCESS_BLOCK
    assert "grant of READ to everyone grants nothing" in d.reason


def test_bucket_owner_enforced_disables_every_acl() -> None:
    enforced = ObjectOwnership.BUCKET_OWNER_ENFORCED
    d = decide(q(None, "s3:GetObject", object_acl="public-read", ownership=enforced))
    assert not d.allowed and "ACLs are disabled" in d.reason
    assert not decide(
        q("alice", "s3:PutObject", bucket_acl="public-read-write", ownership=enforced)
    ).allowed
    # the bucket owner owns every object, whoever wrote it
    assert (
        decide(
            q(OWNER, "s3:GetObject", object_acl="private", object_owner="bob", ownership=enforced)
        ).decided_by
        is DecidedBy.OWNER
    )
    # a bucket policy still works
    policy = parse_policy(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::b/*",
                    }
                ],
            }
        ),
        "b",
    )
    assert decide(q(None, "s3:GetObject", policy=policy, ownership=enforced)).allowed


def test_an_object_someone_else_wrote_is_theirs_to_share() -> None:
    writer = ObjectOwnership.OBJECT_WRITER
    mine = canned("private", "bob", OWNER)
    # the writer reads its own object by identity
    d = decide(q("bob", "s3:GetObject", object_acl=mine, object_owner="bob", ownership=writer))
    assert d.allowed and d.decided_by is DecidedBy.OBJECT_OWNER
    # the bucket owner may not, until the object's ACL grants it
    d = decide(q(OWNER, "s3:GetObject", object_acl=mine, object_owner="bob", ownership=writer))
    assert not d.allowed and "belongs to bob" in d.reason
    shared = canned("bucket-owner-read", "bob", OWNER)
    d = decide(q(OWNER, "s3:GetObject", object_acl=shared, object_owner="bob", ownership=writer))
    assert d.allowed and d.decided_by is DecidedBy.OBJECT_ACL
    # ...but deleting it is a bucket matter: the bucket owner may
    assert decide(
        q(OWNER, "s3:DeleteObject", object_acl=mine, object_owner="bob", ownership=writer)
    ).allowed
    # the writer's tags are its own too
    assert decide(
        q("bob", "s3:PutObjectTagging", object_acl=mine, object_owner="bob", ownership=writer)
    ).allowed
