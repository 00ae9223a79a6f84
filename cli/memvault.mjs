#!/usr/bin/env node
// Launcher: registers tsx's loader and runs the TypeScript CLI.
import { register } from 'tsx/esm/api';
register();
await import('./main.ts');
