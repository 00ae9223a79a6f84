// A small PNG decoder for tests (no dependency: node:zlib inflates the image
// data). Handles what screenshots use: 8-bit truecolour with or without alpha
// (and 8-bit grey), not interlaced. Returns RGBA pixels.
//
// PNG: an 8-byte signature, then chunks (length, type, data, CRC). IHDR gives
// width, height, bit depth, colour type and interlace; the IDAT chunks,
// concatenated, are one zlib stream of rows, each row a filter byte (0 none,
// 1 sub, 2 up, 3 average, 4 Paeth) and the filtered bytes.
import { inflateSync } from 'node:zlib';

export interface Image {
  width: number;
  height: number;
  /** RGBA, row by row. */
  data: Uint8Array;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function decodePng(file: Buffer): Image {
  if (!file.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG (bad signature)');
  let off = 8;
  let width = 0;
  let height = 0;
  let depth = 0;
  let colorType = 0;
  const idat: Buffer[] = [];
  while (off < file.length) {
    const len = file.readUInt32BE(off);
    const type = file.toString('latin1', off + 4, off + 8);
    const data = file.subarray(off + 8, off + 8 + len);
    off += 12 + len;
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8];
      colorType = data[9];
      if (data[12] !== 0) throw new Error('interlaced PNG not supported');
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
  }
  const channels = ({ 0: 1, 2: 3, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (depth !== 8 || !channels) throw new Error(`PNG colour type ${colorType} at depth ${depth} not supported`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error('PNG image data too short');
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? px[row + i - channels] : 0;
      const b = y > 0 ? px[row - stride + i] : 0;
      const c = i >= channels && y > 0 ? px[row - stride + i - channels] : 0;
      let v: number;
      switch (filter) {
        case 0: v = src[i]; break;
        case 1: v = src[i] + a; break;
        case 2: v = src[i] + b; break;
        case 3: v = src[i] + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = src[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`bad PNG filter ${filter} in row ${y}`);
      }
      px[row + i] = v & 255;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    if (channels >= 3) {
      rgba[i * 4] = px[j];
      rgba[i * 4 + 1] = px[j + 1];
      rgba[i * 4 + 2] = px[j + 2];
      rgba[i * 4 + 3] = channels === 4 ? px[j + 3] : 255;
    } else {
      rgba[i * 4] = rgba[i * 4 + 1] = rgba[i * 4 + 2] = px[j];
      rgba[i * 4 + 3] = channels === 2 ? px[j + 1] : 255;
    }
  }
  return { width, height, data: rgba };
}

/** '#rrggbb' as [r, g, b]. */
export function rgb(hex: string): [number, number, number] {
  const n = parseInt(hex.slice(1), 16);
  return [n >> 16, (n >> 8) & 255, n & 255];
}

export interface Box {
  count: number;
  minX: number;
  maxX: number;
  minY: number;
  maxY: number;
}

/** The pixels within `tolerance` (per channel) of a colour, in a region (default: all), and their bounding box. */
export function findColor(img: Image, hex: string, o: { tolerance?: number; x0?: number; x1?: number; y0?: number; y1?: number } = {}): Box {
  const [r, g, b] = rgb(hex);
  const t = o.tolerance ?? 6;
  const box: Box = { count: 0, minX: Infinity, maxX: -1, minY: Infinity, maxY: -1 };
  const x1 = Math.min(o.x1 ?? img.width, img.width);
  const y1 = Math.min(o.y1 ?? img.height, img.height);
  for (let y = Math.max(0, o.y0 ?? 0); y < y1; y++) {
    for (let x = Math.max(0, o.x0 ?? 0); x < x1; x++) {
      const i = (y * img.width + x) * 4;
      if (Math.abs(img.data[i] - r) <= t && Math.abs(img.data[i + 1] - g) <= t && Math.abs(img.data[i + 2] - b) <= t) {
        box.count++;
        if (x < box.minX) box.minX = x;
        if (x > box.maxX) box.maxX = x;
        if (y < box.minY) box.minY = y;
        if (y > box.maxY) box.maxY = y;
      }
    }
  }
  return box;
}
