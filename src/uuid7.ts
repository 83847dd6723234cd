import { randomFillSync } from 'node:crypto';

// Random bytes are drawn 8 KiB at a time: a kernel call per id was a visible share of the CPU
// time of large appends.
const pool = Buffer.allocUnsafe(8192);
let offset = pool.length;
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, '0'));

let lastMs = -1;
let counter = 0;

/**
 * A UUIDv7 (RFC 9562): 48-bit Unix time in milliseconds, a 12-bit counter, then 62 random bits.
 * Ids made later in this process sort later (RFC 9562 method 1: the counter starts at a random
 * value each millisecond and counts up within it; on overflow, or if the clock goes back, the
 * timestamp moves on by one), which keeps the unique index on ids append-friendly.
 */
export function uuidv7(): string {
  if (offset + 10 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const r = offset;
  offset += 10;
  const now = Date.now();
  if (now > lastMs) {
    lastMs = now;
    counter = ((pool[r]! & 0x07) << 8) | pool[r + 1]!; // random start, leaving room to count up
  } else if (++counter > 0xfff) {
    lastMs++;
    counter = 0;
  }
  const high = Math.floor(lastMs / 0x1000000); // upper 24 of the 48 timestamp bits
  const low = lastMs % 0x1000000; // lower 24
  return (
    HEX[(high >>> 16) & 0xff]! + HEX[(high >>> 8) & 0xff]! + HEX[high & 0xff]! + HEX[(low >>> 16) & 0xff]! + '-' +
    HEX[(low >>> 8) & 0xff]! + HEX[low & 0xff]! + '-' +
    HEX[0x70 | (counter >>> 8)]! + HEX[counter & 0xff]! + '-' +
    HEX[0x80 | (pool[r + 2]! & 0x3f)]! + HEX[pool[r + 3]!]! + '-' +
    HEX[pool[r + 4]!]! + HEX[pool[r + 5]!]! + HEX[pool[r + 6]!]! + HEX[pool[r + 7]!]! + HEX[pool[r + 8]!]! + HEX[pool[r + 9]!]!
  );
}
