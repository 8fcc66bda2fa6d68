/** What every list page shares: a paged list that follows `Link`, an action runner that
 * shows its outcome, and an accessible table. */

import { useCallback, useEffect, useState, type InputHTMLAttributes, type ReactNode, type Ref } from "react";
import type { Service } from "../lib/api";
import { useApp } from "../context";
import { ErrorBox, Loading, Notice } from "./ui";

export interface Paged<T> {
  items: T[] | null;
  total: number | null;
  error: unknown;
  setError: (e: unknown) => void;
  reload: () => void;
  /** The *Load more* button, while the API names a next page. */
  more: ReactNode;
}

/** A list from `path`: its first page, then each `Link: rel="next"` on request. */
export function usePaged<T>(service: Service, path: string): Paged<T> {
  const { api } = useApp();
  const [items, setItems] = useState<T[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [total, setTotal] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    api.page<T>(service, path).then(
      (p) => {
        if (!live) return;
        setItems(p.items);
        setNext(p.next);
        setTotal(p.total);
        setError(null);
      },
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [api, service, path, n]);
  const loadMore = () => {
    if (!next) return;
    api.page<T>(service, next).then((p) => {
      setItems((old) => [...(old ?? []), ...p.items]);
      setNext(p.next);
    }, setError);
  };
  const more = next ? (
    <button type="button" onClick={loadMore}>
      Load more
    </button>
  ) : null;
  return { items, total, error, setError, reload: useCallback(() => setN((x) => x + 1), []), more };
}

export interface Action {
  /** Run an action; its message is shown (and announced), its error shown as the API's. */
  run: (what: () => Promise<string>) => Promise<void>;
  /** The outcome: a notice or the error. */
  outcome: ReactNode;
}

export function useAction(after?: () => void): Action {
  const { announce } = useApp();
  const [notice, setNotice] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const run = async (what: () => Promise<string>) => {
    setError(null);
    setNotice(null);
    try {
      const message = await what();
      setNotice(message);
      announce(message);
      after?.();
    } catch (e) {
      setError(e);
    }
  };
  return {
    run,
    outcome: (
      <>
        {notice ? <Notice>{notice}</Notice> : null}
        <ErrorBox error={error} />
      </>
    ),
  };
}

/** A table with a caption for screen readers and column headers; scrolls sideways on a phone. */
export function DataTable({ caption, columns, className, children }: { caption: string; columns: string[]; className?: string; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table className={className}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

/** A paged list's body: its error, "Loading…", the items as `children` draws them, *Load more*. */
export function ListView<T>({ list, what, children }: { list: Paged<T>; what: string; children: (items: T[]) => ReactNode }) {
  return (
    <>
      <ErrorBox error={list.error} />
      {list.items ? children(list.items) : list.error ? null : <Loading what={what} />}
      {list.more}
    </>
  );
}

/** Loads once per `deps` (`key`) and draws the result; the error as the API's message. */
export function Fetched<T>({ load, what, children }: { load: () => Promise<T>; what: string; children: (data: T) => ReactNode }) {
  const [data, setData] = useState<{ value: T } | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let live = true;
    load().then(
      (value) => live && setData({ value }),
      (e: unknown) => live && setError(e),
    );
    return () => {
      live = false;
    };
    // The caller gives the component a `key` when what it loads changes.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  if (error) return <ErrorBox error={error} />;
  if (!data) return <Loading what={what} />;
  return <>{children(data.value)}</>;
}

/** A paged list drawn as a table, one `row` per item. */
export function ListTable<T>({ list, what, columns, row }: { list: Paged<T>; what: string; columns: string[]; row: (item: T) => ReactNode }) {
  return (
    <ListView list={list} what={what}>
      {(items) => (
        <DataTable caption={what} columns={columns}>
          {items.map(row)}
        </DataTable>
      )}
    </ListView>
  );
}

/** A labelled text input, with the API's problem for that field under it. */
export function TextField({ id, label, error, ref, ...input }: { id: string; label: ReactNode; error?: string; ref?: Ref<HTMLInputElement> } & InputHTMLAttributes<HTMLInputElement>) {
  return (
    <>
      <label htmlFor={id}>{label}</label>
      <input id={id} ref={ref} aria-describedby={error ? `${id}-err` : undefined} {...input} />
      {error ? (
        <p id={`${id}-err`} className="field-error">
          {error}
        </p>
      ) : null}
    </>
  );
}

/** A page: a section named by its heading. */
export function Page({ id, title, children }: { id: string; title: ReactNode; children: ReactNode }) {
  return (
    <section aria-labelledby={id}>
      <h1 id={id}>{title}</h1>
      {children}
    </section>
  );
}
