import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import "@xyflow/react/dist/style.css";
import "./styles.css";
import { App } from "./App";
import { ApiClient } from "./lib/api";

const api = new ApiClient();
createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <App api={api} />
  </StrictMode>,
);
