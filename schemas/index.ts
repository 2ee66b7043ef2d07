export * from './names.js';
export * from './common.js';
export * from './steps.js';
export * from './command.js';
export * from './host.js';
export * from './plan.js';
export * from './rollout.js';
export * from './audit.js';
