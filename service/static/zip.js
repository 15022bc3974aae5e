// A tiny zip writer: files stored as they are (method 0, no compression: the images are
// compressed already), each behind a local header, then the central directory and its
// end record, with the CRC-32 of each file. Names in UTF-8 (flag bit 11). No ZIP64:
// at most 65535 files and 4 GiB, beyond which zipBlob throws. No dependencies.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** The CRC-32 (IEEE 802.3, as zip and PNG use it) of some bytes, continued from `crc`. */
export function crc32(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// MS-DOS date and time (local time, two-second steps, years 1980-2107).
function dosDateTime(when) {
  const year = Math.min(Math.max(when.getFullYear(), 1980), 2107);
  return {
    time: (when.getHours() << 11) | (when.getMinutes() << 5) | (when.getSeconds() >> 1),
    date: ((year - 1980) << 9) | ((when.getMonth() + 1) << 5) | when.getDate(),
  };
}

// A name a zip holds safely: no folders, no leading dots, nothing empty.
function safeName(name) {
  const base = String(name).replaceAll(/[\\/:*?"<>|\x00-\x1f]/g, "_").replace(/^\.+/, "");
  return base || "file";
}

const LIMIT = 0xffffffff;

/**
 * A zip file of `files` ([{name, blob, time?}]) as a Blob of type application/zip. The
 * blobs are read once each (for the CRC) and joined, not copied, into the result.
 */
export async function zipBlob(files) {
  if (files.length > 0xffff) throw new Error("too many files for one zip (65535 at most)");
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const file of files) {
    const name = encoder.encode(safeName(file.name));
    const data = new Uint8Array(await file.blob.arrayBuffer());
    if (data.length >= LIMIT || offset >= LIMIT) throw new Error("too large for a zip (4 GiB at most)");
    const crc = crc32(data);
    const { time, date } = dosDateTime(file.time || new Date());
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true); // local file header
    local.setUint16(4, 20, true); // version needed: 2.0
    local.setUint16(6, 0x0800, true); // the name is UTF-8
    local.setUint16(8, 0, true); // stored
    local.setUint16(10, time, true);
    local.setUint16(12, date, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true); // compressed size
    local.setUint32(22, data.length, true); // size
    local.setUint16(26, name.length, true);
    local.setUint16(28, 0, true); // no extra field
    const entry = new DataView(new ArrayBuffer(46));
    entry.setUint32(0, 0x02014b50, true); // central directory header
    entry.setUint16(4, 20, true); // made by: 2.0, MS-DOS attributes
    entry.setUint16(6, 20, true);
    entry.setUint16(8, 0x0800, true);
    entry.setUint16(10, 0, true);
    entry.setUint16(12, time, true);
    entry.setUint16(14, date, true);
    entry.setUint32(16, crc, true);
    entry.setUint32(20, data.length, true);
    entry.setUint32(24, data.length, true);
    entry.setUint16(28, name.length, true);
    // extra, comment, disk, internal and external attributes: all 0
    entry.setUint32(42, offset, true); // where its local header starts
    parts.push(local, name, file.blob);
    central.push(entry, name);
    offset += 30 + name.length + data.length;
  }
  const size = central.reduce((total, part) => total + part.byteLength, 0);
  if (offset + size >= LIMIT) throw new Error("too large for a zip (4 GiB at most)");
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true); // end of central directory
  end.setUint16(8, files.length, true); // entries on this disk
  end.setUint16(10, files.length, true); // entries in all
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true); // where the central directory starts
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}
