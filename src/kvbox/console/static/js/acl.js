// Object Ownership and access control lists, as the S3 API has them: a bucket's
// ownership setting (Get/PutBucketOwnershipControls: with "bucket owner enforced", the
// default for new buckets as on AWS, ACLs are off and only policies decide); the grants of
// a bucket or an object version (Get*Acl), edited grant by grant (an AccessControlPolicy
// body) or replaced by a canned ACL (x-amz-acl). Whether a change is allowed -- Block
// Public Access, ownership -- is the S3 door's decision; its refusal is shown.

import { ApiError, escapeXml, getConfig, s3, s3xml, xall, xchild, xkids, xmlDoc, xtext } from "./api.js";
import { check, field, h, toast } from "./dom.js";
import { describe } from "./routes.js";

const XSI = "http://www.w3.org/2001/XMLSchema-instance";
const ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const GROUPS = {
  [ALL_USERS]: "Everyone (anonymous included)",
  [AUTHENTICATED]: "Any authenticated user",
  "http://acs.amazonaws.com/groups/s3/LogDelivery": "Log delivery",
};
const PERMISSIONS = ["READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL"];
const CANNED = [
  ["private", "Private: the owner only"],
  ["public-read", "Public read: anyone may read"],
  ["public-read-write", "Public read and write: anyone may read and write (buckets)"],
  ["authenticated-read", "Authenticated read: any signed-in user may read"],
  ["bucket-owner-read", "Bucket owner read (objects)"],
  ["bucket-owner-full-control", "Bucket owner full control (objects)"],
];
const OWNERSHIP = [
  ["BucketOwnerEnforced", "Bucket owner enforced: ACLs are disabled; the bucket owner owns every object and policies alone decide (recommended)"],
  ["BucketOwnerPreferred", "Bucket owner preferred: ACLs work; objects written with bucket-owner-full-control belong to the bucket owner"],
  ["ObjectWriter", "Object writer: ACLs work; an object belongs to the user who wrote it"],
];

// The bucket's Object Ownership ("ObjectWriter" for a bucket that never had the setting,
// as the server treats it), or null when the user may not read it.
export async function ownershipOf(bucket) {
  try {
    const doc = await getConfig(bucket, "ownershipControls");
    return doc ? xtext(doc, "ObjectOwnership") : "ObjectWriter";
  } catch {
    return null;
  }
}

export async function ownershipCard(bucket, onChange) {
  const current = await ownershipOf(bucket);
  const box = h("form", { class: "card", "aria-labelledby": "ownership-title" },
    h("h2", { id: "ownership-title" }, "Object ownership"));
  if (current === null) {
    box.append(h("p", { class: "muted" }, "You may not read this bucket's ownership setting."));
    return box;
  }
  const radios = OWNERSHIP.map(([value, label]) => {
    const input = h("input", { type: "radio", name: "ownership", value, checked: value === current });
    return check(label, input);
  });
  box.append(h("fieldset", {}, h("legend", {}, "Who owns the objects, and are ACLs used?"), radios),
    h("button", { type: "submit" }, "Save object ownership"));
  box.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const choice = box.querySelector("input[name=ownership]:checked");
    if (!choice) return;
    try {
      await s3("PUT", bucket, null, {
        params: { ownershipControls: true },
        headers: { "Content-Type": "application/xml" },
        body: xmlDoc("OwnershipControls", [["Rule", [["ObjectOwnership", choice.value]]]]),
      });
      toast("Object ownership saved");
      await onChange();
    } catch (err) {
      toast(describe(err), true);
    }
  });
  return box;
}

function grantOf(g) {
  const who = xkids(g, "Grantee")[0];
  const type = who ? (who.getAttributeNS(XSI, "type") || (xchild(who, "URI") ? "Group" : "CanonicalUser")) : "CanonicalUser";
  return {
    type,
    id: who ? xchild(who, "ID") : "",
    name: who ? xchild(who, "DisplayName") : "",
    uri: who ? xchild(who, "URI") : "",
    email: who ? xchild(who, "EmailAddress") : "",
    permission: xchild(g, "Permission"),
  };
}

function policyBody(ownerId, grants) {
  const granteeXml = (g) => {
    if (g.type === "Group") return `<URI>${escapeXml(g.uri)}</URI>`;
    if (g.type === "AmazonCustomerByEmail") return `<EmailAddress>${escapeXml(g.email)}</EmailAddress>`;
    return `<ID>${escapeXml(g.id)}</ID>`;
  };
  const list = grants.map((g) => `<Grant><Grantee xmlns:xsi="${XSI}" xsi:type="${g.type}">${granteeXml(g)}</Grantee>`
    + `<Permission>${g.permission}</Permission></Grant>`).join("");
  return `<?xml version="1.0" encoding="UTF-8"?><AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`
    + `<Owner><ID>${escapeXml(ownerId)}</ID></Owner><AccessControlList>${list}</AccessControlList></AccessControlPolicy>`;
}

// The ACL card of a bucket (key null) or of an object version.
export async function aclSection(bucket, key, versionId) {
  const q = { acl: true, ...(versionId ? { versionId } : {}) };
  const titleId = `acl-title-${key === null ? "b" : "o"}`;
  const box = h("section", { class: "card", "aria-labelledby": titleId }, h("h2", { id: titleId }, "Access control list"));
  let doc;
  try {
    doc = await s3xml("GET", bucket, key, { params: q });
  } catch (err) {
    box.append(h("p", { class: "muted" }, err instanceof ApiError && err.status === 403
      ? "You may not read this ACL." : describe(err)));
    return box;
  }
  const ownerEl = xkids(doc.documentElement, "Owner")[0];
  const ownerId = ownerEl ? xchild(ownerEl, "ID") : "";
  const grants = xall(doc, "Grant").map(grantOf);
  const ownership = await ownershipOf(bucket);
  box.append(h("p", {}, "Owner: ", h("strong", {}, (ownerEl && xchild(ownerEl, "DisplayName")) || ownerId || "–")));
  if (ownership === "BucketOwnerEnforced") {
    box.append(h("p", { class: "notice", id: key === null ? "acl-disabled" : null },
      "ACLs are disabled for this bucket (Object Ownership: bucket owner enforced): the owner has full control and the bucket policy decides everything else. Change the bucket's Object Ownership to use ACLs."));
    return box;
  }

  // --- grant by grant ---------------------------------------------------------------------
  const rows = h("tbody", {});
  const addRow = (g) => {
    const who = h("select", { "aria-label": "Grantee" },
      h("option", { value: "user" }, "A user…"),
      h("option", { value: ALL_USERS }, GROUPS[ALL_USERS]),
      h("option", { value: AUTHENTICATED }, GROUPS[AUTHENTICATED]));
    const name = h("input", { type: "text", "aria-label": "User name", value: g && g.type === "CanonicalUser" ? g.id : "", placeholder: "user name (canonical id)" });
    if (g && g.type === "Group") who.value = g.uri;
    name.hidden = who.value !== "user";
    who.addEventListener("change", () => { name.hidden = who.value !== "user"; });
    const perm = h("select", { "aria-label": "Permission" }, PERMISSIONS.map((p) => h("option", { value: p, selected: g && g.permission === p }, p)));
    const tr = h("tr", { class: "grant-row" }, h("td", {}, who, " ", name), h("td", {}, perm),
      h("td", {}, h("button", { type: "button", class: "ghost danger small", onclick: () => tr.remove() }, "Remove")));
    tr.collect = () => (who.value === "user"
      ? { type: "CanonicalUser", id: name.value.trim(), permission: perm.value }
      : { type: "Group", uri: who.value, permission: perm.value });
    rows.append(tr);
  };
  for (const g of grants) {
    if (g.type === "AmazonCustomerByEmail") continue; // kvbox has no e-mail identities
    addRow(g);
  }
  const grantsForm = h("form", {},
    h("div", { class: "table-wrap" }, h("table", { class: "acl-grants" },
      h("caption", { class: "hidden" }, "Grants"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Grantee"), h("th", { scope: "col" }, "Permission"), h("th", { scope: "col" }, h("span", { class: "hidden" }, "Actions")))),
      rows)),
    h("div", { class: "row" },
      h("button", { type: "button", class: "ghost", onclick: () => addRow(null) }, "Add grant"),
      h("button", { type: "submit" }, "Save grants")));
  grantsForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const chosen = Array.from(rows.querySelectorAll("tr.grant-row")).map((tr) => tr.collect());
    if (chosen.some((g) => g.type === "CanonicalUser" && !g.id)) {
      toast("Name the user of every user grant", true);
      return;
    }
    try {
      await s3("PUT", bucket, key, { params: q, headers: { "Content-Type": "application/xml" }, body: policyBody(ownerId, chosen) });
      toast("Grants saved");
      box.replaceWith(await aclSection(bucket, key, versionId));
    } catch (err) {
      toast(describe(err), true);
    }
  });

  // --- or a canned ACL -------------------------------------------------------------------
  const canned = h("select", {}, CANNED
    .filter(([v]) => (key === null ? !v.startsWith("bucket-owner") : v !== "public-read-write"))
    .map(([v, label]) => h("option", { value: v }, label)));
  const cannedForm = h("form", { class: "row" }, field("Replace with a canned ACL", canned), h("button", { type: "submit" }, "Save ACL"));
  cannedForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await s3("PUT", bucket, key, { params: q, headers: { "x-amz-acl": canned.value } });
      toast("ACL saved");
      box.replaceWith(await aclSection(bucket, key, versionId));
    } catch (err) {
      toast(describe(err), true);
    }
  });
  box.append(grantsForm, cannedForm);
  return box;
}
