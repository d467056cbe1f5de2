# One image for every service; the command picks which one a container runs (see docker-compose.yml).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
USER node
EXPOSE 8000 8001 8002 8003 8004
CMD ["node", "--import", "tsx", "router/main.ts"]
