// Access control lists, as the S3 API has them: the grants a bucket or an object version
// has (GetBucketAcl, GetObjectAcl), and a canned ACL to replace them (x-amz-acl on
// PutBucketAcl, PutObjectAcl). Whether an ACL may be set at all -- Block Public Access,
// the bucket's object ownership -- is the S3 door's decision; its refusal is shown.

import { ApiError, s3, s3xml, xall, xchild, xkids } from "./api.js";
import { field, h, toast } from "./dom.js";
import { describe } from "./routes.js";

const CANNED = [
  ["private", "Private: the owner only"],
  ["public-read", "Public read: anyone may read"],
  ["public-read-write", "Public read and write: anyone may read and write (buckets)"],
  ["authenticated-read", "Authenticated read: any signed-in user may read"],
  ["bucket-owner-read", "Bucket owner read (objects)"],
  ["bucket-owner-full-control", "Bucket owner full control (objects)"],
];
const GROUPS = {
  "http://acs.amazonaws.com/groups/global/AllUsers": "Everyone (anonymous included)",
  "http://acs.amazonaws.com/groups/global/AuthenticatedUsers": "Any authenticated user",
  "http://acs.amazonaws.com/groups/s3/LogDelivery": "Log delivery",
};

function grantee(g) {
  const who = xkids(g, "Grantee")[0];
  if (!who) return "?";
  const uri = xchild(who, "URI");
  if (uri) return GROUPS[uri] || uri;
  return xchild(who, "DisplayName") || xchild(who, "ID") || xchild(who, "EmailAddress") || "?";
}

// The ACL card of a bucket (key null) or of an object version.
export async function aclSection(bucket, key, versionId) {
  const q = { acl: true, ...(versionId ? { versionId } : {}) };
  const box = h("section", { class: "card", "aria-labelledby": `acl-title-${key === null ? "b" : "o"}` },
    h("h2", { id: `acl-title-${key === null ? "b" : "o"}` }, "Access control list"));
  let doc;
  try {
    doc = await s3xml("GET", bucket, key, { params: q });
  } catch (err) {
    box.append(h("p", { class: "muted" }, err instanceof ApiError && err.status === 403
      ? "You may not read this ACL." : describe(err)));
    return box;
  }
  const grants = xall(doc, "Grant");
  box.append(
    h("p", {}, "Owner: ", h("strong", {}, xchild(xkids(doc.documentElement, "Owner")[0] || doc.documentElement, "DisplayName") || "–")),
    h("div", { class: "table-wrap" }, h("table", { class: "acl-grants" },
      h("caption", { class: "hidden" }, "Grants"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Grantee"), h("th", { scope: "col" }, "Permission"))),
      h("tbody", {}, grants.map((g) => h("tr", {}, h("td", {}, grantee(g)), h("td", {}, xchild(g, "Permission"))))))));
  const canned = h("select", {}, CANNED
    .filter(([v]) => (key === null ? !v.startsWith("bucket-owner") : v !== "public-read-write"))
    .map(([v, label]) => h("option", { value: v }, label)));
  const form = h("form", { class: "row" }, field("Replace with a canned ACL", canned), h("button", { type: "submit" }, "Save ACL"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await s3("PUT", bucket, key, { params: q, headers: { "x-amz-acl": canned.value } });
      toast("ACL saved");
      box.replaceWith(await aclSection(bucket, key, versionId));
    } catch (err) {
      toast(describe(err), true);
    }
  });
  box.append(form);
  return box;
}
