// Small data hooks: load from the API, refresh on a timer, debounce typing.
import { useEffect, useRef, useState } from "react";

import { isAbort } from "./api";

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
}

/**
 * Runs `load` when `key` changes (dropping the data of the previous key) and again, keeping the data
 * shown meanwhile, whenever `refresh` changes. A newer call aborts the one in flight. `key` null:
 * nothing is loaded.
 */
export function useLoader<T>(
  key: string | null,
  load: (signal: AbortSignal) => Promise<T>,
  refresh: number = 0,
): Loaded<T> {
  const [state, setState] = useState<Loaded<T> & { key: string | null }>({
    data: undefined,
    error: undefined,
    loading: key !== null,
    key,
  });
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    if (key === null) {
      setState({ data: undefined, error: undefined, loading: false, key });
      return undefined;
    }
    const controller = new AbortController();
    setState((s) => (s.key === key ? { ...s, loading: true } : { data: undefined, error: undefined, loading: true, key }));
    loadRef.current(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, error: undefined, loading: false, key });
      },
      (error: unknown) => {
        if (controller.signal.aborted || isAbort(error)) return;
        setState((s) => ({ data: s.key === key ? s.data : undefined, error, loading: false, key }));
      },
    );
    return () => controller.abort();
  }, [key, refresh]);

  // The state of an older key is never shown, even for the render before the effect runs.
  if (state.key !== key) return { data: undefined, error: undefined, loading: key !== null };
  return { data: state.data, error: state.error, loading: state.loading };
}

/** `value`, once it has not changed for `ms`. */
export function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}

/** Calls `tick` every `ms` while the page is visible, and as soon as it becomes visible again. */
export function useVisibleInterval(tick: () => void, ms: number): void {
  const tickRef = useRef(tick);
  tickRef.current = tick;
  useEffect(() => {
    let last = Date.now();
    const run = () => {
      last = Date.now();
      tickRef.current();
    };
    const timer = setInterval(() => {
      if (!document.hidden) run();
    }, ms);
    const onVisible = () => {
      if (!document.hidden && Date.now() - last >= ms) run();
    };
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
    };
  }, [ms]);
}
