// How the app shows a failed call: the code, the message and the fields a
// google.rpc.BadRequest detail names, decoded from the wire so the app
// needs no generated code for Google's error details.

import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

export interface Problem {
  code: Code;
  codeName: string;
  message: string;
  fields: { field: string; description: string }[];
}

// problemOf describes err as the app shows it.
export function problemOf(err: unknown): Problem {
  const ce = ConnectError.from(err);
  const fields: Problem["fields"] = [];
  for (const d of ce.details) {
    if ("type" in d && d.type === "google.rpc.BadRequest") {
      fields.push(...badRequestFields(d.value));
    }
  }
  return { code: ce.code, codeName: codeToString(ce.code), message: ce.rawMessage, fields };
}

// badRequestFields reads the violations of a google.rpc.BadRequest
// (field_violations = 1, each with field = 1 and description = 2).
function badRequestFields(bytes: Uint8Array): Problem["fields"] {
  const r = new BinaryReader(bytes);
  const out: Problem["fields"] = [];
  while (r.pos < r.len) {
    const [field, wireType] = r.tag();
    if (field !== 1 || wireType !== WireType.LengthDelimited) {
      r.skip(wireType);
      continue;
    }
    const v = new BinaryReader(r.bytes());
    const violation = { field: "", description: "" };
    while (v.pos < v.len) {
      const [f, wt] = v.tag();
      if (f === 1 && wt === WireType.LengthDelimited) violation.field = v.string();
      else if (f === 2 && wt === WireType.LengthDelimited) violation.description = v.string();
      else v.skip(wt);
    }
    out.push(violation);
  }
  return out;
}
