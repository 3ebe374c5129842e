// A virtualised list of keys: only the rows in view (and a few around
// them) exist in the page, so a store of 100,000 keys scrolls as one of
// ten does. Keys are appended as StreamKeys pages arrive.

const rowHeight = 28;
const overscan = 8;

export class KeyList {
  private keys: string[] = [];
  private scheduled = false;
  private current = "";

  constructor(
    private readonly viewport: HTMLElement,
    private readonly spacer: HTMLElement,
    private readonly open: (key: string) => void,
  ) {
    viewport.addEventListener("scroll", () => this.schedule());
  }

  get count(): number {
    return this.keys.length;
  }

  clear(): void {
    this.keys = [];
    this.viewport.scrollTop = 0;
    this.schedule();
  }

  append(keys: string[]): void {
    for (const k of keys) this.keys.push(k);
    this.schedule();
  }

  remove(key: string): void {
    const i = this.keys.indexOf(key);
    if (i >= 0) this.keys.splice(i, 1);
    this.schedule();
  }

  // select marks key as the one open.
  select(key: string): void {
    this.current = key;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  private render(): void {
    this.spacer.style.height = `${this.keys.length * rowHeight}px`;
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / rowHeight) - overscan);
    const visible = Math.ceil(this.viewport.clientHeight / rowHeight) + 2 * overscan;
    const last = Math.min(this.keys.length, first + visible);
    const rows: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      rows.push(this.row(this.keys[i] ?? "", i));
    }
    // Keep keyboard focus on the same key across a re-render.
    const focused = document.activeElement instanceof HTMLElement ? document.activeElement.dataset.key : undefined;
    this.spacer.replaceChildren(...rows);
    if (focused !== undefined) {
      rows.find((r) => r.dataset.key === focused)?.querySelector("button")?.focus({ preventScroll: true });
    }
  }

  private row(key: string, index: number): HTMLElement {
    const item = document.createElement("div");
    item.className = "key-row";
    item.setAttribute("role", "listitem");
    item.dataset.key = key;
    item.style.top = `${index * rowHeight}px`;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "key";
    b.dataset.key = key;
    b.textContent = key;
    b.title = key;
    if (key === this.current) b.setAttribute("aria-current", "true");
    b.addEventListener("click", () => this.open(key));
    item.append(b);
    return item;
  }
}
