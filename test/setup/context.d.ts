import type { ProvidedStack } from './global-stack.js';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: ProvidedStack;
  }
}
