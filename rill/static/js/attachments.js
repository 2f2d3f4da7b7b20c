// Files picked, pasted or dropped for the next question: each is uploaded at once (POST
// /api/files, with its progress), sent by id with the question, and can be removed before that.
// A file over the server's limit, or a picture for a model that reads text only, is refused here,
// before a byte is sent; a type the server does not read is refused by it (it looks at the bytes),
// in its words.
import { ApiError, NETWORK_ERROR, withAuth } from "./http.js";

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
// Types the server refuses whatever their bytes, where the browser already names them (otherwise
// the server decides, by the bytes).
const REFUSED = /^(audio|video)\/|^image\/(?!(png|jpeg|webp|gif|svg\+xml)$)|^application\/(zip|gzip|x-7z-compressed|x-rar-compressed|x-tar|msword|vnd\.ms-|vnd\.openxmlformats|vnd\.oasis)/;

export class Attachments {
  constructor(limit, onChange) {
    this.limit = limit;
    this.onChange = onChange;
    this.items = [];
    this.counter = 0;
  }

  add(files, takesImages = true) {
    for (const file of files) {
      const item = { key: ++this.counter, name: file.name || "pasted file", size: file.size, type: file.type,
        progress: 0, id: null, error: null, xhr: null };
      this.items.push(item);
      if (file.size > this.limit) {
        item.error = `Too big (${megabytes(file.size)}): this server takes files up to ${megabytes(this.limit)}.`;
      } else if (REFUSED.test(file.type)) {
        item.error = `Rill cannot read ${file.type} files: it reads pictures (PNG, JPEG, WebP, GIF), PDFs and text files.`;
      } else if (!takesImages && file.type.startsWith("image/")) {
        item.error = "This model reads text only: choose one that reads images to send a picture.";
      } else {
        this.upload(item, file);
      }
    }
    this.onChange();
  }

  upload(item, file) {
    const xhr = (item.xhr = new XMLHttpRequest());
    xhr.open("POST", "/api/files");
    for (const [name, value] of Object.entries(withAuth())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) item.progress = event.loaded / event.total;
      this.onChange();
    };
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // a proxy's page
      }
      if (xhr.status === 201 && body?.id) Object.assign(item, { id: body.id, type: body.type, progress: 1 });
      else item.error = body?.error?.message || `The server answered ${xhr.status}.`;
      this.onChange();
    };
    xhr.onerror = () => {
      item.error = new ApiError(NETWORK_ERROR, "Could not reach the server to upload it.").message;
      this.onChange();
    };
    const form = new FormData();
    form.append("file", file, item.name);
    xhr.send(form);
  }

  remove(key) {
    const item = this.items.find((i) => i.key === key);
    if (!item) return;
    if (!item.id && !item.error) item.xhr?.abort();
    if (item.id) fetch(`/api/files/${item.id}`, { method: "DELETE", headers: withAuth() }).catch(() => {});
    this.items = this.items.filter((i) => i !== item);
    this.onChange();
  }

  // Why the question cannot go yet, or null.
  holdsBack() {
    if (this.items.some((i) => i.error)) return "Remove the files that could not be uploaded first.";
    if (this.items.some((i) => !i.id)) return "Wait for the files to finish uploading.";
    return null;
  }

  // The files of the question being sent: they belong to it now.
  take() {
    const files = this.items.map((i) => ({ id: i.id, name: i.name, type: i.type }));
    this.items = [];
    this.onChange();
    return files;
  }
}
