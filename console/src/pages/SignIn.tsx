/** Sign in (username, password, TOTP) and, for a first admin sign-in, MFA enrolment. */

import { useEffect, useRef, useState, type FormEvent } from "react";
import { ApiError } from "../lib/api";
import { useApp } from "../context";
import { ErrorBox, Notice, download } from "../components/ui";
import { TextField } from "../components/data";

interface LoginData {
  token?: string;
  expires_at?: string;
  mfa_setup_required?: boolean;
  setup_token?: string;
}

interface Enrolment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

const COOKIE = { "X-Refresh-Cookie": "1" };

export function SignIn({ message }: { message: string | null }) {
  const { api, signedIn } = useApp();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [needCode, setNeedCode] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [info, setInfo] = useState<string | null>(null);
  const [setupToken, setSetupToken] = useState<string | null>(null);
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [backupCodes, setBackupCodes] = useState<string[] | null>(null);
  const codeRef = useRef<HTMLInputElement>(null);
  const headingRef = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    if (needCode) codeRef.current?.focus();
  }, [needCode]);
  useEffect(() => {
    headingRef.current?.focus();
  }, [setupToken, backupCodes]);

  const login = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, string> = { username, password };
      if (code.trim()) body.mfa_code = code.trim();
      const data = await api.post<LoginData>("cc", "/auth/login", body, { anonymous: true, noRetry: true, headers: COOKIE });
      if (data.mfa_setup_required && data.setup_token) {
        setSetupToken(data.setup_token);
        const en = await api.post<Enrolment>(
          "cc",
          "/auth/mfa/setup",
          { password },
          {
            anonymous: true,
            noRetry: true,
            headers: { ...COOKIE, Authorization: `Bearer ${data.setup_token}` },
          },
        );
        setEnrolment(en);
        setCode("");
      } else if (data.token) {
        api.setSession({ token: data.token, expiresAt: data.expires_at ?? null });
        setPassword("");
        await signedIn();
      }
    } catch (err) {
      if (err instanceof ApiError && err.details.mfa_required) {
        setNeedCode(true);
        setInfo("This account uses MFA: enter the code from your authenticator app (or a backup code).");
      } else setError(err);
    } finally {
      setBusy(false);
    }
  };

  const enable = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const data = await api.post<{ backup_codes: string[] }>(
        "cc",
        "/auth/mfa/enable",
        { password, code: code.trim() },
        {
          anonymous: true,
          noRetry: true,
          headers: { ...COOKIE, Authorization: `Bearer ${setupToken ?? ""}` },
        },
      );
      setBackupCodes(data.backup_codes);
      setEnrolment(null);
      setSetupToken(null);
      setCode("");
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  if (backupCodes) {
    const text = backupCodes.join("\n") + "\n";
    return (
      <section className="auth-card" aria-labelledby="codes-title">
        <h1 id="codes-title" tabIndex={-1} ref={headingRef}>
          Your backup codes
        </h1>
        <p>
          MFA is on. Each code below signs you in once if you lose your authenticator. They are shown <strong>only now</strong>: copy or download them and keep them somewhere safe.
        </p>
        <ol className="backup-codes" aria-label="backup codes">
          {backupCodes.map((c) => (
            <li key={c}>
              <code>{c}</code>
            </li>
          ))}
        </ol>
        <div className="actions">
          <button
            type="button"
            onClick={() => {
              void navigator.clipboard?.writeText(text).then(
                () => setInfo("Backup codes copied to the clipboard."),
                () => setInfo("The browser refused the clipboard: use Download instead."),
              );
            }}
          >
            Copy
          </button>
          <button type="button" onClick={() => download("provisioning-backup-codes.txt", text)}>
            Download
          </button>
          <button
            type="button"
            className="primary"
            onClick={() => {
              setBackupCodes(null);
              setNeedCode(true);
              setInfo("MFA is enabled: sign in with the next code from your app (or a backup code).");
            }}
          >
            I saved them: continue to sign in
          </button>
        </div>
        {info ? <Notice>{info}</Notice> : null}
      </section>
    );
  }

  if (setupToken) {
    return (
      <section className="auth-card" aria-labelledby="enrol-title">
        <h1 id="enrol-title" tabIndex={-1} ref={headingRef}>
          Set up two-factor authentication
        </h1>
        <p>Your role must use MFA. Scan the QR code with an authenticator app (any TOTP app), then enter the 6-digit code it shows.</p>
        <ErrorBox error={error} />
        {enrolment ? (
          <>
            <img className="qr" alt="QR code of the authenticator secret" src={`data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`} />
            <p>
              Cannot scan? Enter this secret by hand: <code className="secret">{enrolment.secret}</code>
            </p>
            <form onSubmit={enable}>
              <TextField id="enrol-code" label="Code from the app" inputMode="numeric" autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} required maxLength={12} />
              <button type="submit" className="primary" disabled={busy}>
                Enable MFA
              </button>
            </form>
          </>
        ) : (
          <p role="status">Preparing the enrolment…</p>
        )}
      </section>
    );
  }

  return (
    <section className="auth-card" aria-labelledby="signin-title">
      <h1 id="signin-title" tabIndex={-1} ref={headingRef}>
        Sign in
      </h1>
      {message ? <Notice>{message}</Notice> : null}
      {info ? <Notice>{info}</Notice> : null}
      <ErrorBox error={error} />
      <form onSubmit={login}>
        <TextField id="username" label="Username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required maxLength={128} autoFocus />
        <TextField id="password" label="Password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required maxLength={1024} />
        <TextField
          id="mfa-code"
          label={<>Authentication code {needCode ? "" : <span className="muted">(if MFA is on)</span>}</>}
          ref={codeRef}
          inputMode="numeric"
          autoComplete="one-time-code"
          value={code}
          onChange={(e) => setCode(e.target.value)}
          required={needCode}
          maxLength={32}
        />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </section>
  );
}
