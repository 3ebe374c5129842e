// kvgate's browser app: open a store, browse its keys by prefix, read,
// create, edit (compare-and-set on the generation read) and delete items,
// and upload files as items. It calls kvgate on the page's own origin over
// the Connect protocol with the generated client.

import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { KVStoreService, PutMode, type Item } from "../../gen/ts/fastly/kv/v1/kv_pb.ts";
import { problemOf, type Problem } from "./errors.ts";
import { KeyList } from "./keylist.ts";
import { uploadFiles } from "./upload.ts";

const tokenKey = "kvgate.token";
const recentKey = "kvgate.recentStores";
const maxRecent = 8;

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el as T;
}

// Every call carries the bearer token the person entered, when there is one.
const withToken: Interceptor = (next) => async (req) => {
  const token = sessionStorage.getItem(tokenKey);
  if (token) req.header.set("Authorization", `Bearer ${token}`);
  return next(req);
};

const client = createClient(
  KVStoreService,
  createConnectTransport({ baseUrl: location.origin, interceptors: [withToken] }),
);
const callOpts = { timeoutMs: 30_000 };

// The item open in the editor: null for a new one.
interface OpenItem {
  key: string;
  generation: bigint;
  value: Uint8Array;
  text: boolean;
}

let storeId = "";
let open: OpenItem | null = null;
let listing: AbortController | null = null;
const keys = new KeyList($("key-list"), $("key-spacer"), (key) => void openItem(key));

function status(text: string): void {
  $("status").textContent = text;
}

// showProblem shows a failed call as people read errors: the code, the
// message and the fields a BadRequest names. A short explanation
// leads when the code has one that helps.
function showProblem(doing: string, p: Problem, explanation = ""): void {
  const box = $("error");
  const head = document.createElement("p");
  head.textContent = `${doing} failed: ${p.codeName}: ${p.message}`;
  const parts: HTMLElement[] = [];
  if (explanation) {
    const e = document.createElement("p");
    e.className = "explanation";
    e.textContent = explanation;
    parts.push(e);
  }
  parts.push(head);
  if (p.fields.length > 0) {
    const ul = document.createElement("ul");
    for (const f of p.fields) {
      const li = document.createElement("li");
      li.textContent = `field ${f.field}: ${f.description}`;
      ul.append(li);
    }
    parts.push(ul);
  }
  box.replaceChildren(...parts);
  box.hidden = false;
}

function clearProblem(): void {
  $("error").hidden = true;
  $("error").replaceChildren();
}

function recentStores(): string[] {
  try {
    const v: unknown = JSON.parse(localStorage.getItem(recentKey) ?? "[]");
    return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
  } catch {
    return [];
  }
}

function rememberStore(id: string): void {
  const list = [id, ...recentStores().filter((s) => s !== id)].slice(0, maxRecent);
  localStorage.setItem(recentKey, JSON.stringify(list));
  renderRecent();
}

function renderRecent(): void {
  const list = recentStores();
  $("recent-stores").replaceChildren(
    ...list.map((s) => Object.assign(document.createElement("option"), { value: s })),
  );
  $("recent").replaceChildren(
    ...list.map((s) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = s;
      b.setAttribute("aria-label", `Open recent store ${s}`);
      b.addEventListener("click", () => openStore(s));
      return b;
    }),
  );
}

function openStore(id: string): void {
  storeId = id;
  $<HTMLInputElement>("store-id").value = id;
  rememberStore(id);
  const url = new URL(location.href);
  url.searchParams.set("store", id);
  history.replaceState(null, "", url);
  $("store").hidden = false;
  document.title = `${id} · kvgate`;
  newItem();
  void loadKeys();
}

// loadKeys streams the keys under the prefix into the list, the count
// growing as pages arrive; a new listing cancels the one before.
async function loadKeys(): Promise<void> {
  listing?.abort();
  const ctl = new AbortController();
  listing = ctl;
  keys.clear();
  clearProblem();
  const prefix = $<HTMLInputElement>("prefix").value;
  const count = $("key-count");
  count.textContent = "Loading keys…";
  try {
    for await (const page of client.streamKeys({ storeId, prefix, pageSize: 1000 }, { signal: ctl.signal })) {
      keys.append(page.keys);
      count.textContent = `${keys.count} keys so far…`;
    }
    count.textContent = `${keys.count} ${keys.count === 1 ? "key" : "keys"}`;
  } catch (err) {
    if (ctl.signal.aborted) return;
    count.textContent = `${keys.count} keys (listing stopped)`;
    showProblem("Listing keys", problemOf(err));
  }
}

function fact(name: string, value: string): HTMLElement[] {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  dd.textContent = value;
  return [dt, dd];
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

function showItem(item: Item): void {
  let text: string | null = null;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(item.value);
  } catch {
    text = null;
  }
  open = { key: item.key, generation: item.generation, value: item.value, text: text !== null };
  $<HTMLInputElement>("item-key").value = item.key;
  $<HTMLInputElement>("item-key").readOnly = true;
  const value = $<HTMLTextAreaElement>("item-value");
  value.value = text ?? hex(item.value);
  value.readOnly = text === null;
  $<HTMLInputElement>("item-metadata").value = item.metadata;
  const modified = item.lastModified ? timestampDate(item.lastModified).toISOString() : "unknown";
  $("item-facts").replaceChildren(
    ...fact("Size", `${item.value.length} bytes`),
    ...fact("Shown as", text === null ? "hex (not UTF-8; read-only)" : "text"),
    ...fact("Generation", item.generation.toString()),
    ...fact("Last modified", modified),
  );
  $<HTMLButtonElement>("download").disabled = false;
  $<HTMLButtonElement>("delete").disabled = false;
  $("item-heading").textContent = `Item ${item.key}`;
  keys.select(item.key);
}

async function openItem(key: string): Promise<void> {
  clearProblem();
  try {
    const res = await client.getItem({ storeId, key }, callOpts);
    if (res.item) showItem(res.item);
    status(`Opened ${key}`);
    $("item-value").focus();
  } catch (err) {
    showProblem(`Reading ${key}`, problemOf(err));
  }
}

function newItem(): void {
  open = null;
  $<HTMLInputElement>("item-key").value = "";
  $<HTMLInputElement>("item-key").readOnly = false;
  $<HTMLTextAreaElement>("item-value").value = "";
  $<HTMLTextAreaElement>("item-value").readOnly = false;
  $<HTMLInputElement>("item-metadata").value = "";
  $("item-facts").replaceChildren();
  $<HTMLButtonElement>("download").disabled = true;
  $<HTMLButtonElement>("delete").disabled = true;
  $("item-heading").textContent = "New item";
  keys.select("");
}

// save creates the item (failing if the key exists) or writes it back
// only if nobody changed it since it was read.
async function save(): Promise<void> {
  clearProblem();
  const key = $<HTMLInputElement>("item-key").value;
  const editing = open;
  const value =
    editing && !editing.text ? editing.value : new TextEncoder().encode($<HTMLTextAreaElement>("item-value").value);
  const metadata = $<HTMLInputElement>("item-metadata").value;
  try {
    if (editing) {
      await client.putItem({ storeId, key, value, metadata, ifGenerationMatch: editing.generation }, callOpts);
    } else {
      await client.putItem({ storeId, key, value, metadata, mode: PutMode.ADD }, callOpts);
      if (key.startsWith($<HTMLInputElement>("prefix").value)) keys.append([key]);
    }
    const res = await client.getItem({ storeId, key }, callOpts);
    if (res.item) showItem(res.item);
    status(editing ? `Saved ${key}` : `Created ${key}`);
  } catch (err) {
    const p = problemOf(err);
    let explanation = "";
    if (p.code === Code.Aborted) {
      explanation = `Not saved: another writer changed ${key} after you opened it. Open it again to see their version, then make your change again.`;
    } else if (p.code === Code.AlreadyExists) {
      explanation = `Not created: ${key} already exists. Open it to edit it.`;
    }
    showProblem(`Saving ${key}`, p, explanation);
  }
}

async function remove(): Promise<void> {
  if (!open) return;
  const key = open.key;
  if (!confirm(`Delete ${key} from ${storeId}? This cannot be undone.`)) return;
  clearProblem();
  try {
    await client.deleteItem({ storeId, key }, callOpts);
    keys.remove(key);
    newItem();
    status(`Deleted ${key}`);
  } catch (err) {
    showProblem(`Deleting ${key}`, problemOf(err));
  }
}

function download(): void {
  if (!open) return;
  const url = URL.createObjectURL(new Blob([open.value as Uint8Array<ArrayBuffer>]));
  const a = document.createElement("a");
  a.href = url;
  a.download = open.key.split("/").pop() || "value";
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function upload(files: File[]): Promise<void> {
  if (files.length === 0) return;
  clearProblem();
  const prefix = $<HTMLInputElement>("prefix").value;
  const written = await uploadFiles(client, storeId, prefix, files, {
    progress: $<HTMLProgressElement>("upload-progress"),
    results: $("upload-results"),
  });
  keys.append(written.filter((k) => k.startsWith(prefix)));
  status(`Uploaded ${written.length} of ${files.length} files`);
}

function wire(): void {
  $("store-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $<HTMLInputElement>("token").value;
    if (token) sessionStorage.setItem(tokenKey, token);
    else sessionStorage.removeItem(tokenKey);
    const id = $<HTMLInputElement>("store-id").value.trim();
    if (id) openStore(id);
  });
  $("prefix-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void loadKeys();
  });
  $("item-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void save();
  });
  $("new-item").addEventListener("click", () => {
    newItem();
    $("item-key").focus();
  });
  $("delete").addEventListener("click", () => void remove());
  $("download").addEventListener("click", download);
  const input = $<HTMLInputElement>("files");
  input.addEventListener("change", () => {
    void upload(Array.from(input.files ?? []));
    input.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    void upload(Array.from(e.dataTransfer?.files ?? []));
  });
}

wire();
renderRecent();
$<HTMLInputElement>("token").value = sessionStorage.getItem(tokenKey) ?? "";
const initial = new URLSearchParams(location.search).get("store");
if (initial) openStore(initial);
