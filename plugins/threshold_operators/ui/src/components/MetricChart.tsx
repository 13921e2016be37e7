// An alert's metric over time, drawn by hand as SVG (no chart library): the value (solid), the
// baseline (thin, grey), the threshold (dashed, data-testid="threshold-line"), and the buckets
// where the alert was firing shaded. Colours are the host theme's CSS variables, so dark mode
// works. The SVG is drawn at the width of its container (measured), so text keeps its size.
import { Box, Flex, Text } from "@chakra-ui/react";
import { useLayoutEffect, useRef, useState, type ReactNode } from "react";

import type { ChartPoint } from "../api";
import { formatNumber, formatTime } from "../format";
import { useI18n } from "../i18n";
import { themeColor } from "./badges";

const HEIGHT = 220;
const MARGIN = { top: 12, right: 14, bottom: 26, left: 52 };
const COLORS = {
  value: themeColor("blue.solid"),
  baseline: themeColor("fg.subtle"),
  threshold: themeColor("red.solid"),
  firing: themeColor("red.muted"),
  grid: themeColor("border"),
  text: themeColor("fg.muted"),
};

interface Point {
  t: number;
  state: ChartPoint["state"];
  value: number | null;
  baseline: number | null;
  threshold: number | null;
}

const finite = (v: number | null | undefined): v is number => typeof v === "number" && Number.isFinite(v);

/** About `count` round ticks (1, 2, 5 x 10^k apart) covering [min, max]. */
export function niceTicks(min: number, max: number, count = 4): number[] {
  const span = max - min;
  if (!(span > 0)) return [min];
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power);
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/** The y range: every value, baseline and threshold, with a margin; a flat series gets some height. */
function yDomain(points: Point[]): [number, number] {
  const all = points.flatMap((p) => [p.value, p.baseline, p.threshold]).filter(finite);
  if (all.length === 0) return [0, 1];
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (hi === lo) {
    const pad = Math.abs(hi) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  } else {
    const pad = (hi - lo) * 0.08;
    lo = lo >= 0 && lo - pad < 0 ? 0 : lo - pad; // do not go below zero for a positive metric
    hi += pad;
  }
  return [lo, hi];
}

/** The typical distance between buckets (the median), for the width of a shaded bucket. */
function bucketStep(points: Point[]): number {
  const gaps = points
    .slice(1)
    .map((p, i) => p.t - (points[i] as Point).t)
    .filter((g) => g > 0)
    .sort((a, b) => a - b);
  return gaps.length > 0 ? (gaps[Math.floor(gaps.length / 2)] as number) : 5 * 60_000;
}

/** An SVG path through the points where `pick` has a value; a missing value breaks the line. */
function linePath(points: Point[], pick: (p: Point) => number | null, x: (t: number) => number, y: (v: number) => number) {
  let d = "";
  let pen = false;
  for (const p of points) {
    const v = pick(p);
    if (!finite(v)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/** The threshold as steps: it holds until the next bucket, where it may change. */
function stepPath(points: Point[], x: (t: number) => number, y: (v: number) => number, end: number) {
  let d = "";
  let last: number | null = null;
  points.forEach((p, i) => {
    const v = p.threshold;
    if (!finite(v)) {
      last = null;
      return;
    }
    const next = points[i + 1];
    const x0 = x(p.t);
    const x1 = next ? x(next.t) : end;
    d += last === null ? `M${x0.toFixed(1)},${y(v).toFixed(1)}` : `L${x0.toFixed(1)},${y(v).toFixed(1)}`;
    d += `L${x1.toFixed(1)},${y(v).toFixed(1)}`;
    last = v;
  });
  return d;
}

/** Runs of consecutive firing buckets, as [first, last] times. */
function firingRuns(points: Point[]): [number, number][] {
  const runs: [number, number][] = [];
  let start: number | null = null;
  let prev = 0;
  for (const p of points) {
    if (p.state === "firing") {
      if (start === null) start = p.t;
      prev = p.t;
    } else if (start !== null) {
      runs.push([start, prev]);
      start = null;
    }
  }
  if (start !== null) runs.push([start, prev]);
  return runs;
}

function useWidth(fallback: number) {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(fallback);
  useLayoutEffect(() => {
    const element = ref.current;
    if (!element) return undefined;
    const measure = () => {
      const w = Math.floor(element.getBoundingClientRect().width);
      if (w > 0) setWidth(w);
    };
    measure();
    if (typeof ResizeObserver === "undefined") return undefined;
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  return [ref, width] as const;
}

interface Props {
  points: ChartPoint[];
  metric: string | null;
}

export function MetricChart({ points: raw, metric }: Props) {
  const { t, locale } = useI18n();
  const [ref, measured] = useWidth(560);
  const width = Math.max(240, measured);

  const points: Point[] = raw
    .map((p) => ({ t: Date.parse(p.bucket), state: p.state, value: p.value, baseline: p.baseline, threshold: p.threshold }))
    .filter((p) => Number.isFinite(p.t))
    .sort((a, b) => a.t - b.t);

  if (points.length === 0) {
    return (
      <Box ref={ref} w="100%" minW={0}>
        <Box py={6} textAlign="center" color="fg.muted" data-testid="metric-chart-empty">
          {t("detail.noPoints")}
        </Box>
      </Box>
    );
  }

  const step = bucketStep(points);
  const t0 = (points[0] as Point).t - (points.length === 1 ? step : 0);
  const t1 = (points[points.length - 1] as Point).t + step / 2;
  const [lo, hi] = yDomain(points);
  const left = MARGIN.left;
  const right = width - MARGIN.right;
  const top = MARGIN.top;
  const bottom = HEIGHT - MARGIN.bottom;
  const x = (time: number) => left + ((time - t0) / (t1 - t0 || 1)) * (right - left);
  const y = (v: number) => bottom - ((v - lo) / (hi - lo || 1)) * (bottom - top);
  const clampX = (v: number) => Math.min(right, Math.max(left, v));

  const yTicks = niceTicks(lo, hi, 4).filter((v) => v >= lo && v <= hi);
  const xTickCount = width < 420 ? 2 : width < 700 ? 3 : 5;
  const xTicks = Array.from({ length: xTickCount }, (_, i) => t0 + ((t1 - t0) * i) / (xTickCount - 1 || 1));
  const sameDay = new Date(t0).toDateString() === new Date(t1).toDateString();
  const timeLabel = (time: number) =>
    new Intl.DateTimeFormat(locale, sameDay ? { hour: "2-digit", minute: "2-digit", hourCycle: "h23" } : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(time);

  const valuePath = linePath(points, (p) => p.value, x, y);
  const baselinePath = linePath(points, (p) => p.baseline, x, y);
  const thresholdPath = stepPath(points, x, y, x(t1));
  const runs = firingRuns(points);

  return (
    <Box ref={ref} w="100%" minW={0}>
      <svg
        data-testid="metric-chart"
        width={width}
        height={HEIGHT}
        viewBox={`0 0 ${width} ${HEIGHT}`}
        role="img"
        aria-label={t("chart.label", { metric: metric ?? t("chart.value") })}
        style={{ display: "block", maxWidth: "100%", fontSize: 11 }}
      >
        {runs.map(([start, end]) => {
          const x0 = clampX(x(start) - (x(start + step) - x(start)) / 2);
          const x1 = clampX(x(end) + (x(end + step) - x(end)) / 2);
          return (
            <rect
              key={start}
              data-testid="firing-span"
              x={x0}
              y={top}
              width={Math.max(1, x1 - x0)}
              height={bottom - top}
              fill={COLORS.firing}
              opacity={0.45}
            >
              <title>{`${t("chart.firing")}: ${formatTime(new Date(start).toISOString(), locale)} – ${formatTime(new Date(end).toISOString(), locale)}`}</title>
            </rect>
          );
        })}

        {yTicks.map((v) => (
          <g key={v}>
            <line x1={left} x2={right} y1={y(v)} y2={y(v)} stroke={COLORS.grid} strokeWidth={1} />
            <text x={left - 6} y={y(v)} dy="0.32em" textAnchor="end" fill={COLORS.text}>
              {formatNumber(v, locale)}
            </text>
          </g>
        ))}
        <line x1={left} x2={right} y1={bottom} y2={bottom} stroke={COLORS.text} strokeWidth={1} />
        {xTicks.map((time, i) => (
          <text
            key={time}
            x={x(time)}
            y={bottom + 16}
            textAnchor={i === 0 ? "start" : i === xTicks.length - 1 ? "end" : "middle"}
            fill={COLORS.text}
          >
            {timeLabel(time)}
          </text>
        ))}

        {baselinePath ? (
          <path data-testid="baseline-line" d={baselinePath} fill="none" stroke={COLORS.baseline} strokeWidth={1.5} />
        ) : null}
        {thresholdPath ? (
          <path
            data-testid="threshold-line"
            d={thresholdPath}
            fill="none"
            stroke={COLORS.threshold}
            strokeWidth={1.5}
            strokeDasharray="6 4"
          />
        ) : null}
        {valuePath ? (
          <path data-testid="value-line" d={valuePath} fill="none" stroke={COLORS.value} strokeWidth={2} strokeLinejoin="round" />
        ) : null}
        {points.length <= 400
          ? points.map((p) =>
              finite(p.value) ? (
                <circle
                  key={p.t}
                  cx={x(p.t)}
                  cy={y(p.value)}
                  r={p.state === "firing" ? 3 : 2}
                  fill={p.state === "firing" ? COLORS.threshold : COLORS.value}
                >
                  <title>
                    {`${formatTime(new Date(p.t).toISOString(), locale)}  ${t("chart.value")} ${formatNumber(p.value, locale)}` +
                      (finite(p.baseline) ? ` · ${t("chart.baseline")} ${formatNumber(p.baseline, locale)}` : "") +
                      (finite(p.threshold) ? ` · ${t("chart.threshold")} ${formatNumber(p.threshold, locale)}` : "")}
                  </title>
                </circle>
              ) : null,
            )
          : null}
      </svg>
      <Flex gap={4} wrap="wrap" fontSize="xs" color="fg.muted" mt={1} data-testid="metric-chart-legend">
        <LegendItem label={metric ? `${t("chart.value")} (${metric})` : t("chart.value")}>
          <line x1="0" x2="18" y1="5" y2="5" stroke={COLORS.value} strokeWidth={2} />
        </LegendItem>
        <LegendItem label={t("chart.baseline")}>
          <line x1="0" x2="18" y1="5" y2="5" stroke={COLORS.baseline} strokeWidth={1.5} />
        </LegendItem>
        <LegendItem label={t("chart.threshold")}>
          <line x1="0" x2="18" y1="5" y2="5" stroke={COLORS.threshold} strokeWidth={1.5} strokeDasharray="4 3" />
        </LegendItem>
        <LegendItem label={t("chart.firing")}>
          <rect x="0" y="0" width="18" height="10" fill={COLORS.firing} opacity={0.45} />
        </LegendItem>
      </Flex>
    </Box>
  );
}

function LegendItem({ label, children }: { label: string; children: ReactNode }) {
  return (
    <Flex align="center" gap={1.5}>
      <svg width="18" height="10" aria-hidden="true">
        {children}
      </svg>
      <Text as="span">{label}</Text>
    </Flex>
  );
}
