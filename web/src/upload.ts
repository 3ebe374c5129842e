// Uploading files as items through PutItems (browsers cannot stream a
// request, so BatchPutItems is out of reach): files go in groups of
// bounded size, the progress bar advancing per group, and each file gets
// its own result line.

import type { Client } from "@connectrpc/connect";

import type { KVStoreService } from "../../gen/ts/fastly/kv/v1/kv_pb.ts";
import { problemOf } from "./errors.ts";

const groupBytes = 8 << 20;
const groupFiles = 100;

export interface UploadView {
  progress: HTMLProgressElement;
  results: HTMLElement;
}

// groups splits files into runs of at most groupFiles files and about
// groupBytes bytes (a larger file goes alone).
function groups(files: File[]): File[][] {
  const out: File[][] = [];
  let cur: File[] = [];
  let bytes = 0;
  for (const f of files) {
    if (cur.length > 0 && (cur.length >= groupFiles || bytes + f.size > groupBytes)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(f);
    bytes += f.size;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

function result(view: UploadView, ok: boolean, text: string): void {
  const li = document.createElement("li");
  li.className = ok ? "ok" : "failed";
  li.textContent = text;
  view.results.append(li);
}

// uploadFiles writes each file as the item prefix + its name and returns
// the keys written.
export async function uploadFiles(
  client: Client<typeof KVStoreService>,
  storeId: string,
  prefix: string,
  files: File[],
  view: UploadView,
): Promise<string[]> {
  view.results.replaceChildren();
  view.progress.hidden = false;
  view.progress.max = files.length;
  view.progress.value = 0;
  const written: string[] = [];
  for (const group of groups(files)) {
    const items = await Promise.all(
      group.map(async (f) => ({ key: prefix + f.name, value: new Uint8Array(await f.arrayBuffer()) })),
    );
    try {
      const res = await client.putItems({ storeId, items }, { timeoutMs: 120_000 });
      const failed = new Map(res.failures.map((f) => [Number(f.index), f]));
      items.forEach((item, i) => {
        const f = failed.get(i);
        if (f) result(view, false, `${group[i]?.name}: not written: ${f.code}: ${f.reason}`);
        else {
          written.push(item.key);
          result(view, true, `${group[i]?.name}: written as ${item.key}`);
        }
      });
    } catch (err) {
      const p = problemOf(err);
      const fields = p.fields.map((f) => ` (field ${f.field}: ${f.description})`).join("");
      for (const f of group) result(view, false, `${f.name}: not written: ${p.codeName}: ${p.message}${fields}`);
    }
    view.progress.value += group.length;
  }
  return written;
}
