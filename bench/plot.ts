// The scaling plot of docs/scaling.png: two panels drawn as SVG by hand (log-scaled axes, one line
// per series), rendered to PNG by resvg (a devDependency: a Rust SVG renderer shipped prebuilt).
import * as fs from 'node:fs';

/** A named line: [x, y] points. */
export interface Series {
  name: string;
  points: [number, number][];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
const W = 1000;
const H = 420;

interface Panel {
  x0: number;
  title: string;
  xLabel: string;
  yLabel: string;
  xTicks: [number, string][];
  logX: boolean;
  series: Series[];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function human(v: number): string {
  return v >= 1e9 ? `${v / 1e9}G` : v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v);
}

function panel(p: Panel): string {
  const left = p.x0 + 70;
  const right = p.x0 + W / 2 - 20;
  const top = 50;
  const bottom = H - 60;
  const xs = p.series.flatMap((s) => s.points.map(([x]) => x));
  const ys = p.series.flatMap((s) => s.points.map(([, y]) => y)).filter((y) => y > 0);
  // Log-scaled on both axes: the values span several orders of magnitude.
  const yLo = 10 ** Math.floor(Math.log10(Math.min(...ys)));
  const yHi = 10 ** Math.ceil(Math.log10(Math.max(...ys)));
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const fx = (x: number): number =>
    p.logX
      ? left + ((Math.log(x) - Math.log(xMin)) / (Math.log(xMax) - Math.log(xMin))) * (right - left)
      : left + ((x - xMin) / (xMax - xMin)) * (right - left);
  const fy = (y: number): number =>
    bottom - ((Math.log(Math.max(y, yLo)) - Math.log(yLo)) / (Math.log(yHi) - Math.log(yLo))) * (bottom - top);
  const out: string[] = [];
  out.push(`<text x="${(left + right) / 2}" y="28" text-anchor="middle" font-size="17" font-weight="bold">${esc(p.title)}</text>`);
  for (let t = yLo; t <= yHi * 1.001; t *= 10) {
    out.push(`<line x1="${left}" x2="${right}" y1="${fy(t)}" y2="${fy(t)}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 8}" y="${fy(t) + 4}" text-anchor="end" font-size="12">${human(t)}</text>`);
  }
  for (const [x, label] of p.xTicks) {
    out.push(`<line x1="${fx(x)}" x2="${fx(x)}" y1="${bottom}" y2="${bottom + 5}" stroke="#333"/>`);
    out.push(`<text x="${fx(x)}" y="${bottom + 20}" text-anchor="middle" font-size="12">${esc(label)}</text>`);
  }
  out.push(`<line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#333"/>`);
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 42}" text-anchor="middle" font-size="13">${esc(p.xLabel)}</text>`);
  out.push(
    `<text transform="translate(${p.x0 + 18} ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" font-size="13">${esc(p.yLabel)}</text>`,
  );
  p.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2.5" points="${s.points.map(([x, y]) => `${fx(x)},${fy(y)}`).join(' ')}"/>`,
    );
    for (const [x, y] of s.points) out.push(`<circle cx="${fx(x)}" cy="${fy(y)}" r="4" fill="${color}"/>`);
    out.push(`<rect x="${left + 12}" y="${top + 6 + i * 20}" width="14" height="4" fill="${color}"/>`);
    out.push(`<text x="${left + 32}" y="${top + 12 + i * 20}" font-size="13">${esc(s.name)}</text>`);
  });
  return out.join('\n');
}

/** Draw the two panels (MB/s by message size; tasks/s by workers) and write a PNG to `file`. */
export async function plotScaling(file: string, bySize: Series[], byWorkers: Series[], caption: string): Promise<void> {
  const sizeTicks: [number, string][] = [8, 64, 512, 4096, 32_768, 262_144, 1_048_576].map((s) => [
    s,
    s >= 2 ** 20 ? `${s / 2 ** 20}M` : s >= 1024 ? `${s / 1024}K` : `${s}`,
  ]);
  const workerTicks: [number, string][] = [1, 2, 4, 8].map((w) => [w, String(w)]);
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    panel({
      x0: 0,
      title: 'Throughput by message size',
      xLabel: 'message size (bytes)',
      yLabel: 'MB/s',
      xTicks: sizeTicks,
      logX: true,
      series: bySize,
    }),
    panel({
      x0: W / 2,
      title: 'Pool.map of tiny tasks by workers',
      xLabel: 'worker processes',
      yLabel: 'tasks/s',
      xTicks: workerTicks,
      logX: true,
      series: byWorkers,
    }),
    `<text x="${W - 10}" y="${H - 8}" text-anchor="end" font-size="11" fill="#666">${esc(caption)}</text>`,
    '</svg>',
  ].join('\n');
  const { Resvg } = await import('@resvg/resvg-js');
  const png = new Resvg(svg, { font: { loadSystemFonts: true } }).render().asPng();
  fs.writeFileSync(file, png);
}
